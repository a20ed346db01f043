"""Raw data: the real offline sample, the market simulator, the live fetcher and sentiment scoring."""
