import pytest
from django.test import override_settings


@pytest.fixture
def uploads_root(tmp_path):
    """Uploads under a temporary root, with small parts allowed (1 KiB) so tests stay small."""
    root = tmp_path / "uploads"
    with override_settings(
        UPLOADS_ROOT=str(root), UPLOADS_MIN_PART_SIZE=1024, UPLOADS_DEFAULT_PART_SIZE=1024
    ):
        yield root
