#!/usr/bin/env bash
# DEMO=sensitivity scripts/demo.sh (3-D) or DEMO=sensitivity2d (2-D): seed 000's experiment. Three models of one
# bundle trained with equal epochs on the same cases: without augmentation (baseline), with a basis perturbation and
# level drawn uniformly (uniform), and with sensitivity-adaptive augmentation (adaptive: uniform for a warm-up, then
# the sampler rebuilt every k epochs from the model's sensitivity, measured on a slice held out of the training
# split); all three train on the training split less that slice. Then the corruption benchmark (configs/corruptions.json:
# BraTS-C, or the common corruptions of natural images) on the test cases, clean and corrupted, with paired
# Wilcoxon tests between the models (Holm over every corruption, severity and region).
#   DEMO_DATA        where the data go (default data/phantoms_3mm, or data/scenes_sensitivity for 2-D)
#   NUM_CASES        phantom cases (default 40: 24 training, 4 validation, 12 test); 2-D: NUM_SCENES (default
#                    1200 of the train split, 10 % of them validation) and NUM_TEST (default 100 test scenes)
#   DEMO_EPOCHS      epochs of every model (3-D: default 12, refreshes after epochs 4, 8 and 12 on 32^3 crops of 2
#                    held-out cases; 2-D: default 15, refreshes after 5, 10 and 15 on 8 held-out scenes)
#   DEMO_POLICIES    the arms (default "none uniform adaptive"; add monai (3-D) or trivial (2-D))
#   DEMO_SEVERITIES  severities of the benchmark (default "[1, 3, 5]"; "[1, 2, 3, 4, 5]" for all)
# Extra arguments are passed to every bundle run as overrides.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
source "$(dirname "${BASH_SOURCE[0]}")/demo_lib.sh"
start=$(date +%s)
overrides=("$@")
POLICIES=(${DEMO_POLICIES:-none uniform adaptive})
SEVERITIES="${DEMO_SEVERITIES:-[1, 3, 5]}"
if [ "${DEMO}" = "sensitivity2d" ]; then
    DATA="${DEMO_DATA:-data/scenes_sensitivity}"
    BUNDLE=bundles/natural2d_segmentation
    PROFILE="'$BUNDLE/configs/cpu_demo.json'"
    EPOCHS="${DEMO_EPOCHS:-15}"
    echo "[demo sensitivity 2d] 1/3 offline scenes in Pascal VOC's layout -> $DATA"
    python scripts/make_scenes.py --output "$DATA" --num-train "${NUM_SCENES:-1200}" --num-val "${NUM_TEST:-100}" \
        --seed 0 --overwrite
    every=(--sensitivity_warmup_epochs 5 --sensitivity_every_epochs 5 --val_interval "$EPOCHS"
           --sensitivity_crop_size "[128, 128]" --sensitivity_holdout_maximum 8)
else
    DATA="${DEMO_DATA:-data/phantoms_3mm_sensitivity}"
    BUNDLE=bundles/brats_unet3d
    PROFILE="'configs/cpu_demo.json'"
    EPOCHS="${DEMO_EPOCHS:-12}"
    echo "[demo sensitivity] 1/3 phantom BraTS cases at 3 mm -> $DATA"
    python scripts/make_phantoms.py --output "$DATA" --num-cases "${NUM_CASES:-40}" --seed 0 --spacing 3 \
        --num-workers 2 --fractions 0.6 0.1 0.3
    every=(--sensitivity_warmup_epochs 4 --sensitivity_every_epochs 4 --val_interval "$EPOCHS"
           --sensitivity_crop_size "[32, 32, 32]")
fi
CKPT="$BUNDLE/models/sensitivity_demo"
OUT="$BUNDLE/eval/sensitivity_demo"
TRACKING="sqlite:///$PWD/$BUNDLE/eval/mlflow.db"
rm -rf "$CKPT" "$OUT"  # a fresh experiment: nothing an earlier demo left is resumed or compared by mistake
common=(--bundle_root "$BUNDLE" --dataset_dir "$DATA" --meta_file "$BUNDLE/configs/metadata.json"
        --logging_file "$BUNDLE/configs/logging.conf" --output_dir "$OUT" --tracking_uri "$TRACKING"
        --metrics_dir "$OUT/metrics")
train="'$BUNDLE/configs/train.json'"

models=()
for policy in "${POLICIES[@]}"; do
    echo "[demo sensitivity] 2/3 training with policy '$policy' for $EPOCHS epochs -> $CKPT/$policy"
    quiet python -m monai.bundle run --config_file "[$train,'configs/sensitivity.json',$PROFILE]" "${common[@]}" \
        --sensitivity_policy "$policy" --ckpt_dir "$CKPT/$policy" --max_epochs "$EPOCHS" "${every[@]}" \
        "${overrides[@]}"
    models+=("'$policy=$CKPT/$policy/model.pt'")
done
list=$(IFS=,; echo "[${models[*]}]")

echo "[demo sensitivity] 3/3 the corruption benchmark (configs/corruptions.json) at severities $SEVERITIES on the test"
echo "                   cases: every model clean and corrupted, paired Wilcoxon tests between them, Holm"
quiet python -m monai.bundle run --config_file "[$train,'configs/corruptions.json',$PROFILE]" "${common[@]}" \
    --checkpoint "$CKPT/${POLICIES[0]}/model.pt" --corruption_models "$list" --corruption_severities "$SEVERITIES" \
    "${overrides[@]}"
python scripts/sensitivity_verdict.py "$OUT/corruptions/report" --refreshes "$CKPT/adaptive/sensitivity"
echo "[demo sensitivity] finished in $(( $(date +%s) - start )) s (set-up excluded)"
