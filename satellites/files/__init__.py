"""Files: list, move and delete files on local disk or object storage."""

from satellites.files import delete_file, get_files, move_file  # noqa: F401
