#!/bin/sh
# Installs the Debian packages whose files or commands are missing, once: each argument is
# `what:package`, where `what` is an absolute path that must exist or a command that must be
# on PATH. Used by the Makefile (`make system`, and Node.js for the console's build), so that
# `make run` and `make test` set themselves up on a fresh machine. Costs one check per need
# when everything is there.
set -eu
missing=""
for need in "$@"; do
    what=${need%:*}
    { [ -e "$what" ] || command -v "$what" >/dev/null 2>&1; } || missing="$missing ${need##*:}"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    apt="apt-get"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    apt="sudo -n apt-get"
else
    echo "make: these Debian packages are needed:$missing" >&2
    echo "make: install them as root (apt-get install -y$missing), then run make again" >&2
    exit 1
fi
echo "make: installing$missing with $apt"
export DEBIAN_FRONTEND=noninteractive
$apt update -qq || true
# shellcheck disable=SC2086 # one word per package
$apt install -y -qq $missing || {
    echo "make: $apt could not install$missing; install them, then run make again" >&2
    exit 1
}
