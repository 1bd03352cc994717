#!/bin/sh
# Installs the real S3 clients tests/clients drives: Debian's rclone, s3fs, s3cmd and
# aws-cli v2 (aws-cli v1 comes from PyPI with the test extras). A no-op when all are there.
set -eu
missing=""
command -v rclone >/dev/null 2>&1 || missing="$missing rclone"
command -v s3fs >/dev/null 2>&1 || missing="$missing s3fs"
command -v s3cmd >/dev/null 2>&1 || missing="$missing s3cmd"
[ -x /usr/bin/aws ] || missing="$missing awscli"
command -v fusermount >/dev/null 2>&1 || command -v fusermount3 >/dev/null 2>&1 || missing="$missing fuse3"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
[ -z "$missing" ] && exit 0
echo "installing client tools:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
