#!/usr/bin/env bash
# DEMO=2d scripts/demo.sh: offline scenes in Pascal VOC's layout -> train the 2-D UNet on CPU -> evaluate (mIoU)
# -> the colour baseline that shows the scenes are not trivially easy -> the attack audit (configs/attack.json, the
# overlay the 3-D demo runs, unchanged: FGSM and i-FGSM at 2/255, 4/255, 8/255 on 60 test scenes, tested by IoU).
#   DEMO_DATA    where the scenes go (default data/scenes)
#   NUM_SCENES   scenes of the train split (default 1200; 10 % of them held out for validation)
#   NUM_TEST     scenes of the val split, the test set (default 200)
#   DEMO_EPOCHS  training epochs (default 15, bundles/natural2d_segmentation/configs/cpu_demo.json)
#   DEMO_CERTIFY plain: also train a model with Gaussian noise sigma 0.25 and certify it by randomized smoothing;
#                denoised: also train the diffusion denoiser on the scenes and certify plain and denoised smoothing
#                of the model trained without noise at sigma 0.25 and 0.5, tau 0.75 (Laousy et al.'s setting)
# Extra arguments are passed to the bundle runs as overrides, e.g. DEMO=2d scripts/demo.sh --learning_rate 0.002
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
start=$(date +%s)
DATA="${DEMO_DATA:-data/scenes}"
BUNDLE=bundles/natural2d_segmentation
overrides=("$@")
source "$(dirname "${BASH_SOURCE[0]}")/demo_lib.sh"
[ -n "${DEMO_EPOCHS:-}" ] && overrides+=(--max_epochs "$DEMO_EPOCHS")
steps=$([ -n "${DEMO_CERTIFY:-}" ] && echo 6 || echo 5)
case "${DEMO_CERTIFY:-}" in ""|plain|denoised) ;; *) echo "DEMO_CERTIFY must be plain or denoised" >&2; exit 2;; esac

echo "[demo 2d] 1/$steps offline scenes in Pascal VOC's layout -> $DATA"
python scripts/make_scenes.py --output "$DATA" --num-train "${NUM_SCENES:-1200}" --num-val "${NUM_TEST:-200}" \
    --seed 0 --overwrite

CKPT="$BUNDLE/models/cpu_demo"
OUT="$BUNDLE/eval/cpu_demo"
rm -rf "$CKPT" "$OUT"
common=(--bundle_root "$BUNDLE" --dataset_dir "$DATA" --meta_file "$BUNDLE/configs/metadata.json"
        --logging_file "$BUNDLE/configs/logging.conf" --ckpt_dir "$CKPT"
        --metrics_dir "$OUT/metrics" --prediction_dir "$OUT/predictions")
echo "[demo 2d] 2/$steps training the 2-D UNet (CPU profile $BUNDLE/configs/cpu_demo.json)"
quiet python -m monai.bundle run --config_file "['$BUNDLE/configs/train.json','$BUNDLE/configs/cpu_demo.json']" \
    "${common[@]}" "${overrides[@]}"
echo "[demo 2d] 3/$steps evaluating the best checkpoint on the held-out test scenes"
quiet python -m monai.bundle run \
    --config_file "['$BUNDLE/configs/train.json','$BUNDLE/configs/evaluate.json','$BUNDLE/configs/cpu_demo.json']" \
    "${common[@]}" "${overrides[@]}"
echo
python -m robustseg.workflows.summary "$BUNDLE/eval" --metrics-dir "$OUT/metrics"
echo "Predictions (palette PNGs in the dataset's colours): $OUT/predictions"
echo
echo "[demo 2d] 4/$steps the colour baseline: logistic regression on each pixel's RGB, scored the same way"
python scripts/colour_baseline.py --datalist "$DATA/datalist.json" --model-summary "$OUT/metrics/iou_summary.json" \
    --output "$OUT/colour_baseline.json" | python -c "
import json, sys
r = json.load(sys.stdin)
print(f\"colour baseline mIoU {r['mIoU']:.3f} vs the network's {r['model_mIoU']:.3f} (ratio {r['ratio_to_model']:.2f})\")"
echo
echo "[demo 2d] 5/$steps attack audit with robustseg audit: FGSM and i-FGSM (10 steps) at 2/255, 4/255 and 8/255 in"
echo "         [0, 1] pixel units, clipped to [0, 1], beside noise of the same norm; paired Wilcoxon tests on IoU"
quiet robustseg audit "$BUNDLE" --dataset_dir "$DATA" --config_file "$BUNDLE/configs/cpu_demo.json" \
    --checkpoint "$CKPT/model.pt" --output_dir "$OUT" --tracking_uri "sqlite:///$PWD/$BUNDLE/eval/mlflow.db"
if [ "${DEMO_CERTIFY:-}" = "plain" ]; then
    NOISY="$CKPT/noise_sigma0.25"
    files="'$BUNDLE/configs/train.json','configs/noise_training.json'"
    echo "[demo 2d] 6/$steps certification: training a model with Gaussian noise sigma 0.25 -> $NOISY"
    quiet python -m monai.bundle run --config_file "[$files,'$BUNDLE/configs/cpu_demo.json']" \
        "${common[@]}" --ckpt_dir "$NOISY" --noise_sigma 0.25 "${overrides[@]}"
    echo "[demo 2d] 6/$steps certification: SegCertify of that model at sigma 0.25 on the test scenes"
    quiet python -m monai.bundle run --config_file "[$files,'configs/certify.json','$BUNDLE/configs/cpu_demo.json']" \
        "${common[@]}" --ckpt_dir "$NOISY" --noise_sigma 0.25 --certify_sigmas "[0.25]" \
        --certify_output_dir "$OUT/certify" "${overrides[@]}"
elif [ "${DEMO_CERTIFY:-}" = "denoised" ]; then
    files="'$BUNDLE/configs/train.json','configs/denoiser.json'"
    echo "[demo 2d] 6/$steps certification: training the diffusion denoiser (2-D DDPM) on the scenes -> $CKPT/denoiser"
    quiet python -m monai.bundle run --config_file "[$files,'$BUNDLE/configs/cpu_demo.json']" \
        "${common[@]}" --denoiser_ckpt_dir "$CKPT/denoiser" "${overrides[@]}"
    echo "[demo 2d] 6/$steps certification: plain and denoised SegCertify of the model trained without noise"
    files="$files,'configs/certify.json','configs/certify_denoised.json'"
    quiet python -m monai.bundle run --config_file "[$files,'$BUNDLE/configs/cpu_demo.json']" \
        "${common[@]}" --denoiser_ckpt_dir "$CKPT/denoiser" --certify_output_dir "$OUT/certify" "${overrides[@]}"
fi
echo "[demo 2d] finished in $(( $(date +%s) - start )) s (set-up excluded)"
