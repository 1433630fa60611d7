#!/usr/bin/env bash
# The README's first command: phantom BraTS cases -> train the 3-D UNet on CPU -> evaluate -> attack audit.
#   NUM_CASES    phantom cases to generate (default 60: 41 training, 7 validation, 12 test)
#   DEMO_DATA    where the phantoms go (default data/phantoms)
#   DEMO_EPOCHS  training epochs (default 12, configs/cpu_demo.json)
#   DEMO_CERTIFY plain: also train a noise-trained model (sigma 0.25) and certify it by randomized smoothing;
#                denoised: also train the diffusion denoiser and certify plain and denoised smoothing
#   DEMO         2d: the 2-D path instead (scripts/demo_2d.sh: scenes, 2-D UNet, mIoU, colour baseline);
#                defences: the seed's defence experiment and its masking-aware re-evaluation (scripts/demo_defences.sh)
#                sensitivity / sensitivity2d: seed 000's experiment, baseline, uniform and sensitivity-adaptive
#                augmentation compared on the corruption benchmark, in 3-D / 2-D (scripts/demo_sensitivity.sh)
# Extra arguments are passed to both bundle runs as overrides, e.g. scripts/demo.sh --learning_rate 0.001
set -euo pipefail
case "${DEMO:-3d}" in
    3d) ;;
    2d) exec bash "$(dirname "${BASH_SOURCE[0]}")/demo_2d.sh" "$@";;
    defences) exec bash "$(dirname "${BASH_SOURCE[0]}")/demo_defences.sh" "$@";;
    sensitivity|sensitivity2d) exec bash "$(dirname "${BASH_SOURCE[0]}")/demo_sensitivity.sh" "$@";;
    *) echo "DEMO must be 3d, 2d, defences, sensitivity or sensitivity2d but is ${DEMO}" >&2; exit 2;;
esac
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
start=$(date +%s)
DATA="${DEMO_DATA:-data/phantoms}"
BUNDLE=bundles/brats_unet3d
overrides=("$@")
source "$(dirname "${BASH_SOURCE[0]}")/demo_lib.sh"
steps=$([ -n "${DEMO_CERTIFY:-}" ] && echo 5 || echo 4)
[ -n "${DEMO_EPOCHS:-}" ] && overrides+=(--max_epochs "$DEMO_EPOCHS")

echo "[demo] 1/$steps phantom BraTS cases -> $DATA"
python scripts/make_phantoms.py --output "$DATA" --num-cases "${NUM_CASES:-60}" --seed 0 --fractions 0.68 0.12 0.2

# the demo keeps its checkpoints and results apart from your own (models/, eval/metrics); MLflow runs share eval/mlflow.db.
# A fresh training: drop what an earlier demo left so it cannot be resumed or evaluated by mistake.
CKPT="$BUNDLE/models/cpu_demo"
OUT="$BUNDLE/eval/cpu_demo"
rm -rf "$CKPT" "$OUT"
common=(--bundle_root "$BUNDLE" --dataset_dir "$DATA" --meta_file "$BUNDLE/configs/metadata.json"
        --logging_file "$BUNDLE/configs/logging.conf" --ckpt_dir "$CKPT"
        --metrics_dir "$OUT/metrics" --prediction_dir "$OUT/predictions")
echo "[demo] 2/$steps training the 3-D UNet (CPU profile configs/cpu_demo.json)"
quiet python -m monai.bundle run --config_file "['$BUNDLE/configs/train.json','configs/cpu_demo.json']" \
    "${common[@]}" "${overrides[@]}"
echo "[demo] 3/$steps evaluating the best checkpoint on the held-out test cases"
quiet python -m monai.bundle run \
    --config_file "['$BUNDLE/configs/train.json','$BUNDLE/configs/evaluate.json','configs/cpu_demo.json']" \
    "${common[@]}" "${overrides[@]}"
echo
python -m robustseg.workflows.summary "$BUNDLE/eval" --metrics-dir "$OUT/metrics"
echo "Predictions (NIfTI, BraTS labels, input affine): $OUT/predictions"
echo
echo "[demo] 4/$steps attack audit, the one command you would point at your own bundle: robustseg audit"
echo "       FGSM, i-FGSM and ti-FGSM (erase the tumour) beside noise of the same norm, paired Wilcoxon tests"
quiet robustseg audit "$BUNDLE" --dataset_dir "$DATA" --config_file configs/cpu_demo.json \
    --checkpoint "$CKPT/model.pt" --output_dir "$OUT" --tracking_uri "sqlite:///$PWD/$BUNDLE/eval/mlflow.db"
if [ -n "${DEMO_CERTIFY:-}" ]; then
    NOISY="$CKPT/noise_sigma0.25"
    files="'$BUNDLE/configs/train.json','configs/noise_training.json'"
    echo "[demo] 5/$steps certification: training a base model with Gaussian noise sigma 0.25 -> $NOISY"
    quiet python -m monai.bundle run --config_file "[$files,'configs/cpu_demo.json']" \
        "${common[@]}" --ckpt_dir "$NOISY" --noise_sigma 0.25 "${overrides[@]}"
    if [ "$DEMO_CERTIFY" = "denoised" ]; then
        echo "[demo] 5/$steps certification: training the diffusion denoiser -> $CKPT/denoiser"
        quiet python -m monai.bundle run --config_file "[$files,'configs/denoiser.json','configs/cpu_demo.json']" \
            "${common[@]}" --ckpt_dir "$NOISY" --denoiser_ckpt_dir "$CKPT/denoiser" "${overrides[@]}"
        files="$files,'configs/denoiser.json','configs/certify.json','configs/certify_denoised.json'"
    else
        files="$files,'configs/certify.json'"
    fi
    echo "[demo] 5/$steps certification: SegCertify on the test cases (configs/cpu_demo.json: n0, n, alpha, cases)"
    quiet python -m monai.bundle run --config_file "[$files,'configs/cpu_demo.json']" \
        "${common[@]}" --ckpt_dir "$NOISY" --denoiser_ckpt_dir "$CKPT/denoiser" \
        --certify_output_dir "$OUT/certify" "${overrides[@]}"
fi
echo "[demo] finished in $(( $(date +%s) - start )) s (set-up excluded)"
# the figures the docs quote come from a demo run: say when this run's differ (regenerate them with --write)
python scripts/doc_figures.py --check > /dev/null || true
