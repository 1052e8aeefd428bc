"""Hands-free voice: microphone → echo cancellation → voice detection → speech recognition →
the same turn loop as typing → speech synthesis, sentence by sentence → speaker.

Qt-free like the rest of the core; the window supplies Qt audio devices through `audio.AudioInput`
and `audio.AudioOutput`, the CLI and the tests supply recordings.
"""
