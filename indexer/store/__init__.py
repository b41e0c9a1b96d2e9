"""Every database and storage access lives here and nowhere else."""
