# Where the recipe's stages run (sourced by local/run.sh), as Kaldi's cmd.sh does.
#   cmd=local   every mlkd command runs here (--max-jobs-run at once)
#   cmd=slurm   every stage becomes an sbatch job (`mlkd slurm`), each after the jobs whose outputs
#               it reads (afterok); per-language teachers and per-model decodes are job arrays
# Two classes of jobs, as Kaldi's train_cmd and decode_cmd: training (train-teacher, distill,
# finetune) with conf/slurm/gpu.yaml's resources, everything else (prepare, calibration, decoding,
# scoring) with conf/slurm/cpu.yaml's. Options merge over those files, key by key, without editing:
#   MLKD_SLURM_OPTS   every job (e.g. "--account lab --partition debug")
#   MLKD_TRAIN_OPTS   training jobs (e.g. "--time 2-00:00:00 --gpus-per-node 4 --ntasks-per-node 4")
#   MLKD_CPU_OPTS     the other jobs (e.g. "--cpus-per-task 16")
cmd=${MLKD_CMD:-local}
train_cmd="--config conf/slurm/gpu.yaml ${MLKD_SLURM_OPTS:-} ${MLKD_TRAIN_OPTS:-}"
cpu_cmd="--config conf/slurm/cpu.yaml ${MLKD_SLURM_OPTS:-} ${MLKD_CPU_OPTS:-}"
