"""The vision path on a generated tiny model and projector: real llama.cpp, real multimodal handler.

The pictures' effect is measured, not its meaning (the weights are noise): a turn with one picture
reads exactly the projector's image-token count more than the same turn without it.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from app.core.images import NormalisedImage, normalise
from app.engines.vision import VisionEngine, check_projector, image_url
from app.errors import ModelError
from app.settings import GenerationSettings
from tests.fixtures.tiny_gguf import N_EMBD, write_tiny_llama
from tests.fixtures.tiny_vlm import BROKEN_KINDS, IMAGE_TOKENS, write_broken_projector, write_tiny_vlm

GREEDY = GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=8, seed=3)


@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="module")
def engine(vlm: tuple[Path, Path]) -> Iterator[VisionEngine]:
    model, mmproj = vlm
    loaded = VisionEngine(model, mmproj, n_ctx=512, n_threads=2)
    yield loaded
    loaded.close()


def _picture(colour: tuple[int, int, int] = (200, 30, 30)) -> NormalisedImage:
    encoded = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(encoded, format="JPEG")
    return normalise(encoded.getvalue(), name="red.jpg")


def test_a_picture_adds_exactly_its_image_tokens(engine: VisionEngine) -> None:
    with_picture = engine.reply("What is in this picture?", [_picture()], GREEDY)
    without = engine.reply("What is in this picture?", [], GREEDY)
    assert with_picture.usage.prompt_tokens - without.usage.prompt_tokens == IMAGE_TOKENS
    assert with_picture.usage.completion_tokens > 0 and with_picture.finish_reason in ("stop", "length")


def test_each_picture_in_a_turn_is_encoded(engine: VisionEngine) -> None:
    one = engine.reply("Compare.", [_picture()], GREEDY)
    two = engine.reply("Compare.", [_picture(), _picture((10, 10, 240))], GREEDY)
    assert two.usage.prompt_tokens - one.usage.prompt_tokens == IMAGE_TOKENS


def test_pictures_travel_as_png_data_urls() -> None:
    url = image_url(_picture())
    assert url.startswith("data:image/png;base64,iVBOR")  # base64 of the PNG signature


def test_a_valid_projector_passes_the_check(vlm: tuple[Path, Path]) -> None:
    check_projector(vlm[1], N_EMBD)


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_a_broken_projector_is_refused_before_loading(kind: str, tmp_path: Path, vlm: tuple[Path, Path]) -> None:
    broken = write_broken_projector(tmp_path / f"{kind}.gguf", kind)
    with pytest.raises(ModelError) as caught:
        check_projector(broken, N_EMBD)
    assert broken.name in caught.value.message and caught.value.hint
    with pytest.raises(ModelError):  # the engine runs the same check before it loads anything
        VisionEngine(vlm[0], broken, n_ctx=512)


def test_a_mismatched_projector_says_so(tmp_path: Path) -> None:
    broken = write_broken_projector(tmp_path / "wrong.gguf", "wrong_rows")
    with pytest.raises(ModelError, match="does not match its model"):
        check_projector(broken, N_EMBD)


def test_a_text_model_is_not_a_projector(vlm: tuple[Path, Path]) -> None:
    with pytest.raises(ModelError, match="not a vision projector"):
        check_projector(vlm[0], N_EMBD)


def test_a_model_without_a_chat_template_is_refused(tmp_path: Path, vlm: tuple[Path, Path]) -> None:
    plain = write_tiny_llama(tmp_path / "plain.gguf")
    with pytest.raises(ModelError, match="chat template"):
        VisionEngine(plain, vlm[1], n_ctx=512)


_UNCHECKED_LOAD = """
import sys
from llama_cpp import Llama
from llama_cpp.llama_chat_format import MTMDChatHandler
model, mmproj, url = sys.argv[1:4]
handler = MTMDChatHandler(clip_model_path=mmproj, verbose=False)
llm = Llama(model_path=model, chat_handler=handler, n_ctx=512, n_threads=1, verbose=False)
print("text model loaded", flush=True)
content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "hi"}]
llm.create_chat_completion(messages=[{"role": "user", "content": content}], max_tokens=2)
"""


def test_why_the_check_exists_an_unchecked_broken_projector_kills_its_process(
    tmp_path: Path, vlm: tuple[Path, Path]
) -> None:
    """Loads a projector without `mm.2` past the check, in a child process, and watches it die.

    llama.cpp 0.3.36 dies by SIGSEGV here; a future version that raises instead also passes.
    What must never happen is a normal exit: then the check would guard against nothing.
    """
    broken = write_broken_projector(tmp_path / "no_mm2.gguf", "no_mm2")
    result = subprocess.run(
        [sys.executable, "-c", _UNCHECKED_LOAD, str(vlm[0]), str(broken), image_url(_picture())],
        capture_output=True,
        timeout=120,
    )
    # The marker proves the child got as far as the projector (not, say, an import failure).
    assert b"text model loaded" in result.stdout, result.stderr.decode(errors="replace")[-2000:]
    assert result.returncode != 0, "llama.cpp survived a projector without mm.2"
