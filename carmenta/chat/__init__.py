"""Chat: conversations with models (the model layer lives in `carmenta.chat.llm`)."""
