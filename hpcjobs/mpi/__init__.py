"""The MPI/PMIx pre-flight: what MPI an image carries (:mod:`~hpcjobs.mpi.probe`, recorded once per
image by :mod:`~hpcjobs.mpi.record`), what the submitting host's launcher offers
(:mod:`~hpcjobs.mpi.host`), what works together (:mod:`~hpcjobs.mpi.table`, data with its sources)
and the verdict for one job (:mod:`~hpcjobs.mpi.verdict`, :mod:`~hpcjobs.mpi.check`)."""
