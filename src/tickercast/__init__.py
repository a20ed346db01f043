"""tickercast: raw prices and news -> Spark features -> a TFT trained with DDP -> a FastAPI service."""

__version__ = "0.1.0"
