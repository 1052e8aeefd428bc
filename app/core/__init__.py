"""Hearth's Qt-free core: conversations, context budgeting, the store and the turn loop."""
