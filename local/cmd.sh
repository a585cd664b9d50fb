# Where the recipe's stages run (sourced by local/run.sh), as Kaldi's cmd.sh does.
#   cmd=local   every mlkd command runs here, one after the other
#   cmd=slurm   every stage becomes an sbatch job (`mlkd slurm`), chained with afterok;
#               per-language teachers and per-model decodes are job arrays
# Override without editing: MLKD_CMD=slurm MLKD_SLURM_OPTS="--partition gpu --gpus-per-node 1" local/run.sh
cmd=${MLKD_CMD:-local}
slurm_opts=${MLKD_SLURM_OPTS:-"--cpus-per-task 2 --mem 8G --time 2:00:00"}
