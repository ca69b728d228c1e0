/* MPI hello for the hpcjobs dev cluster's mpi.sif: prints "rank R of N on HOST".
 * Built by scripts/dev-cluster with the host's mpicc (same OpenMPI as in the image). */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    int rank = 0, size = 0, len = 0;
    char host[MPI_MAX_PROCESSOR_NAME];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    /* a collective, so that every rank really talks to the others */
    int sum = 0;
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d on %s (rank sum %d)\n", rank, size, host, sum);
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
