#!/usr/bin/env bash
# DEMO=defences scripts/demo.sh: the seed's defence experiment (Liu et al.) on BraTS phantoms, then an honest
# re-evaluation. Trains the 3-D UNet (the baseline), fine-tunes it by adversarial training the seed's way (i-FGSM
# examples as augmentation, clean:adversarial 1:1) and by defensive distillation (a teacher at T = 20, then its
# student), and compares the three with configs/compare.json: FGSM, i-FGSM and ti-FGSM as the seed attacked, then the
# masking-aware attacks (logits / T, a margin loss, transfer from the baseline, noise, the per-case worst of all).
#   DEMO_DATA       where the phantoms go (default data/phantoms_3mm: 3 mm voxels, one 64^3 window per case)
#   NUM_CASES       phantom cases (default 50: 28 training, 6 validation, 16 test)
#   DEMO_EPOCHS     baseline epochs (default 12, configs/cpu_demo.json)
#   DEFENCE_EPOCHS  fine-tuning epochs of each defended model (default 4)
# Extra arguments are passed to every bundle run as overrides.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
source "$(dirname "${BASH_SOURCE[0]}")/demo_lib.sh"
start=$(date +%s)
DATA="${DEMO_DATA:-data/phantoms_3mm}"
BUNDLE=bundles/brats_unet3d
overrides=("$@")
[ -n "${DEMO_EPOCHS:-}" ] && overrides+=(--max_epochs "$DEMO_EPOCHS")
EPOCHS="${DEFENCE_EPOCHS:-4}"
CKPT="$BUNDLE/models/defences_demo"
OUT="$BUNDLE/eval/defences_demo"
TRACKING="sqlite:///$PWD/$BUNDLE/eval/mlflow.db"

echo "[demo defences] 1/5 phantom BraTS cases at 3 mm -> $DATA"
python scripts/make_phantoms.py --output "$DATA" --num-cases "${NUM_CASES:-50}" --seed 0 --spacing 3 --num-workers 2 \
    --fractions 0.56 0.12 0.32
rm -rf "$CKPT" "$OUT"  # a fresh experiment: nothing an earlier demo left is resumed or compared by mistake
common=(--bundle_root "$BUNDLE" --dataset_dir "$DATA" --meta_file "$BUNDLE/configs/metadata.json"
        --logging_file "$BUNDLE/configs/logging.conf" --output_dir "$OUT" --tracking_uri "$TRACKING"
        --metrics_dir "$OUT/metrics" --attack_budgets "[0.25]")
train="'$BUNDLE/configs/train.json'"
profile="'configs/cpu_demo.json'"

echo "[demo defences] 2/5 the baseline: the 3-D UNet trained without a defence -> $CKPT/model.pt"
quiet python -m monai.bundle run --config_file "[$train,$profile]" "${common[@]}" --ckpt_dir "$CKPT" "${overrides[@]}"

echo "[demo defences] 3/5 adversarial training as the seed did: i-FGSM (3 steps) at eps 0.25 on half of each batch,"
echo "                fine-tuned from the baseline for $EPOCHS epochs -> $CKPT/adv_ifgsm"
quiet python -m monai.bundle run --config_file "[$train,'configs/adversarial_training.json',$profile]" \
    "${common[@]}" --ckpt_dir "$CKPT/adv_ifgsm" --adv_method ifgsm --adv_steps 3 --adv_ratio 0.5 \
    --init_checkpoint "$CKPT/model.pt" --max_epochs "$EPOCHS" --val_interval "$EPOCHS" "${overrides[@]}"

echo "[demo defences] 4/5 defensive distillation at T = 20: the teacher (fine-tuned from the baseline at T), then the"
echo "                student on the teacher's softmax at T, each $EPOCHS epochs at learning rate 0.0005 (at the"
echo "                baseline's 0.002 the teacher collapses to background) -> $CKPT/distill_T20"
distill=(--config_file "[$train,'configs/distillation.json',$profile]" "${common[@]}" --distill_temperature 20
         --distill_teacher_checkpoint "$CKPT/distill_T20_teacher/model.pt" --init_checkpoint "$CKPT/model.pt"
         --max_epochs "$EPOCHS" --val_interval "$EPOCHS" --learning_rate 0.0005)
quiet python -m monai.bundle run "${distill[@]}" --distill_stage teacher --ckpt_dir "$CKPT/distill_T20_teacher" \
    "${overrides[@]}"
quiet python -m monai.bundle run "${distill[@]}" --distill_stage student --ckpt_dir "$CKPT/distill_T20" \
    "${overrides[@]}"

echo "[demo defences] 5/5 the comparison (configs/compare.json) on the test cases: the seed's FGSM, i-FGSM and"
echo "                ti-FGSM, then the same on logits / T, PGD on the margin loss, i-FGSM transferred from the"
echo "                baseline, noise of the same norm, and the worst of all per case"
quiet python -m monai.bundle run --config_file "[$train,'configs/compare.json',$profile]" "${common[@]}" \
    --compare_models "['baseline=$CKPT/model.pt','adv_ifgsm=$CKPT/adv_ifgsm/model.pt','distilled=$CKPT/distill_T20/model.pt']" \
    --compare_attacks "\$@attacks" --compare_margin_attacks "[{'name': 'pgd', 'steps': 3, 'loss': 'margin', 'label': 'pgd-margin'}]" \
    --compare_transfer "['ifgsm']" "${overrides[@]}"
echo
python scripts/defence_verdict.py "$OUT/compare/report" --defended distilled --other adv_ifgsm
echo "[demo defences] finished in $(( $(date +%s) - start )) s (set-up excluded)"
