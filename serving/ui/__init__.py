"""Review screens for student-welfare staff and model reviewers, served under /ui."""
