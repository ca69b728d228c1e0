"""Task launchers (plugins): srun and mpirun prefixes for multi-task jobs."""
