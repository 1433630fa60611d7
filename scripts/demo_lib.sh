# Sourced by the demo scripts. MONAI starts every bundle run with two notices: trust the configs (they run code),
# and "Not all config files are in ..." (the overlays live in configs/, outside the bundle). The demos' configs are
# robustseg's own and meta_file and logging_file are given, so `quiet` shows both for the first run only.
first_run=1
quiet() {
    if [ -n "$first_run" ]; then first_run=""; "$@"; return; fi
    PYTHONWARNINGS="ignore:parsing config_file:UserWarning" "$@" 2>&1 | sed -u '/Not all config files are in/d'
}
