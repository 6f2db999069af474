"""A small hand-made export in the platform's CSV format (as Excel writes it)."""

from __future__ import annotations

from pathlib import Path

EXPORT = {
    "pupils": [
        "pupil_id;birth_year;birth_month;gender;mother_tongue;home_municipality",
        "p1;2009;3;female;finnish;Helsinki",
        "p2;2009;11;male;swedish;Espoo",
    ],
    "schools": [
        "school_id;name;municipality;level",
        "s1;Alppilan koulu;Helsinki;basic",
        "s2;Kallion lukio;Helsinki;general_upper_secondary",
    ],
    "study_rights": [
        "study_right_id;pupil_id;school_id;start_date",
        "r1;p1;s1;01.08.2018",
        "r2;p2;s1;01.08.2018",
    ],
    "study_right_states": [
        "study_right_id;state_from;state",
        "r1;01.08.2018;present",
        "r2;01.08.2018;present",
        "r2;15.02.2025;resigned",
    ],
    "attendance_marks": [
        "pupil_id;school_id;lesson_start;lesson;subject;mark_code;recorded_by;recorded_at",
        "p1;s1;02.09.2024 08:15;1;MA;P;teacher;02.09.2024 08:20",
        "p1;s1;2024-09-02T21:30:00Z;9;MA;LV;teacher;",
        "p2;s1;02.09.2024 08:15;1;MA;LV;teacher;02.09.2024 08:20",
        "p2;s1;02.09.2024 08:15;1;MA;SA;office;03.09.2024 12:00",
        "p2;s1;02.09.2024 09:15;2;AI;MY;teacher;02.09.2024 09:20",
    ],
    "grades": [
        "pupil_id;school_id;date;subject;grade",
        "p1;s1;20.12.2024;MA;8+",
        "p1;s1;20.12.2024;AI;9-",
        "p2;s1;20.12.2024;MA;4",
        "p2;s1;20.12.2024;LI;S",
        "p1;s1;30.05.2025;KE;9",
    ],
    "support_decisions": [
        "pupil_id;start_date;end_date;level",
        "p2;01.10.2024;;intensified",
    ],
}


def write_export(folder: Path, tables: dict[str, list[str]]) -> Path:
    """Write ``tables`` as Excel-style CSV: ``;``, UTF-8 with a BOM, CRLF lines."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in tables.items():
        (folder / f"{name}.csv").write_bytes(
            ("\r\n".join(lines) + "\r\n").encode("utf-8-sig")
        )
    return folder
