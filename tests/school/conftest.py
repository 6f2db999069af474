from pathlib import Path

import pytest
from school_fixtures import EXPORT, write_export


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    return write_export(tmp_path / "export", EXPORT)
