#!/bin/sh
# Put Hearth in the desktop's application menu, run from this folder: the menu entry starts ./hearth here.
# Run it again after moving the folder. Nothing outside your own ~/.local/share is touched.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
apps="$data/applications"
icons="$data/icons/hicolor"
mkdir -p "$apps" "$icons/256x256/apps" "$icons/scalable/apps"
# The folder's path goes into a sed replacement: escape what sed would read as syntax there.
program=$(printf '%s' "$here/hearth" | sed 's/[\\|&]/\\&/g')
sed "s|^Exec=.*|Exec=\"$program\"|" "$here/hearth.desktop" > "$apps/hearth.desktop"
cp "$here/hearth.png" "$icons/256x256/apps/hearth.png"
cp "$here/hearth.svg" "$icons/scalable/apps/hearth.svg"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" >/dev/null 2>&1 || true
echo "Hearth is now in the application menu ($apps/hearth.desktop)."
