#!/bin/sh
# Read secrets from files: for each RECONCILER_<NAME>_FILE=<path> in the environment,
# export RECONCILER_<NAME> with the file's content, then run the command.
set -eu
for name in $(env | sed -n 's/^\(RECONCILER_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
    path=$(printenv "${name}_FILE")
    value=$(cat "$path")
    export "$name=$value"
    unset "${name}_FILE"
done
exec "$@"
