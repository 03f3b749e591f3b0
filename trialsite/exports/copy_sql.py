"""Placeholder while the PostgreSQL COPY path is written."""


def available(dataset, options) -> bool:
    return False


def copy_dataset(dataset, context, stream, *, bom: bool) -> int:
    raise NotImplementedError
