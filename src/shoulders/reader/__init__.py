"""The frozen reader for open-domain QA: retrieve, re-rank, pack, read."""
