#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The dependency graph between the modules of user/, and the check of it against user/LAYERS.
#
# A module is the basename of user/X.c and/or user/X.h. Two graphs, one "X -> Y" edge a line,
# sorted and unique, without self-edges:
#   --includes [SRC_DIR]   X.c or X.h has #include "Y.h" (or "../user/Y.h") and SRC_DIR/Y.h exists
#   --symbols [OBJ_DIR]    X.o has an undefined symbol that Y.o defines (nm). Header-only modules
#                          have no object, so their inline functions and macros don't show here.
# and what is made of them:
#   --cycles               reads edges on stdin, prints each cycle (a strongly connected component
#                          of more than one module) as its modules on one line
#   --dot [SRC_DIR [OBJ_DIR [LAYERS]]]
#                          both graphs as Graphviz text (`| dot -Tsvg`), one rank per layer
#   --check SRC_DIR OBJ_DIR LAYERS
#                          every edge of both graphs must go strictly down LAYERS, and every
#                          module must be listed there exactly once; prints each problem, and
#                          exits 1 if there is any
# Defaults: SRC_DIR user, OBJ_DIR .output/user, LAYERS SRC_DIR/LAYERS (all from the top).
#
# LAYERS: one layer a line, the top one first, modules separated by spaces, '#' starts a comment.
# A module may use only modules on lower lines.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)

# modules SRC_DIR: the module names, one a line.
modules() {
	local f
	for f in "$1"/*.c "$1"/*.h; do
		[ -e "$f" ] || continue
		f=${f##*/}
		echo "${f%.[ch]}"
	done | sort -u
}

# include_edges SRC_DIR
include_edges() {
	local src=$1 f
	for f in "$src"/*.c "$src"/*.h; do
		[ -e "$f" ] || continue
		awk -v src="$src" '
			# #include "../user/Y.h" or "Y.h"; "../bpf/..." and the generated skeleton
			# (found through -I.output, not in SRC_DIR) are not modules.
			/^[ \t]*#[ \t]*include[ \t]*"/ {
				split($0, q, "\"")
				h = q[2]
				sub(/^\.\.\/user\//, "", h)
				if (h ~ /\// || h !~ /\.h$/)
					next
				if ((getline line < (src "/" h)) < 0)
					next
				close(src "/" h)
				x = FILENAME
				sub(/.*\//, "", x)
				sub(/\.[ch]$/, "", x)
				sub(/\.h$/, "", h)
				if (x != h)
					print x " -> " h
			}' "$f"
	done | sort -u
}

# symbol_edges OBJ_DIR [SRC_DIR]: with SRC_DIR, only the objects of modules that have a SRC_DIR/X.c,
# so that the object of a module renamed or removed since (still in .output) doesn't count.
symbol_edges() {
	local obj=$1 src=${2:-} o objs=()
	for o in "$obj"/*.o; do
		[ -e "$o" ] || continue
		if [ -n "$src" ]; then
			o=${o##*/}
			[ -e "$src/${o%.o}.c" ] || continue
			o=$obj/$o
		fi
		objs+=("$o")
	done
	[ ${#objs[@]} -gt 0 ] || return 0
	# -P -A: "DIR/X.o: symbol TYPE [value size]". An undefined symbol has no value (U, or w/v
	# when weak); every other external symbol is a definition (T, D, B, R, C, W, V...).
	nm -P -A -g "${objs[@]}" | awk '
		{
			x = $1
			sub(/:$/, "", x)
			sub(/.*\//, "", x)
			sub(/\.o$/, "", x)
			if (NF == 3)
				uses[x, $2] = 1
			else
				defs[$2] = defs[$2] " " x
		}
		END {
			for (k in uses) {
				split(k, xs, SUBSEP)
				if (!(xs[2] in defs))
					continue
				n = split(defs[xs[2]], ys, " ")
				for (i = 1; i <= n; i++)
					if (ys[i] != xs[1])
						print xs[1] " -> " ys[i]
			}
		}' | sort -u
}

# cycles: edges on stdin, cycles on stdout, each as its modules (sorted) on one line.
# Transitive closure (Warshall): fine for a few dozen modules. Two modules are in the same
# strongly connected component when each reaches the other.
cycles() {
	awk '
		$2 == "->" { r[$1, $3] = 1; node[$1]; node[$3] }
		END {
			for (k in node)
				for (i in node)
					if ((i, k) in r)
						for (j in node)
							if ((k, j) in r)
								r[i, j] = 1
			for (i in node) {
				if (i in done)
					continue
				line = i
				done[i]
				for (j in node)
					if (j != i && ((i, j) in r) && ((j, i) in r)) {
						line = line " " j
						done[j]
					}
				if (line != i)
					print line
			}
		}' | while read -r -a scc; do
		printf '%s\n' "${scc[@]}" | sort | paste -sd' '
	done | sort
}

# layers_awk: the awk code that reads LAYERS (the first file; the second is "-", stdin) into
# layer[name] = number (the top layer is 1), line[name] and order[1..nnames], and lists names
# given twice in dup. (Not FNR == NR: that is true of stdin too when LAYERS is empty.)
# shellcheck disable=SC2016 # awk code, not shell
layers_awk='
	FILENAME != "-" {
		sub(/#.*/, "")
		if (NF == 0)
			next
		nlayers++
		for (i = 1; i <= NF; i++) {
			if ($i in layer)
				dup[$i] = dup[$i] ", " FNR
			else {
				layer[$i] = nlayers
				line[$i] = FNR
				order[++nnames] = $i
			}
		}
		next
	}
'

# edges_tagged SRC_DIR OBJ_DIR: "X -> Y GRAPHS", GRAPHS being includes, symbols or includes,symbols.
edges_tagged() {
	{
		include_edges "$1" | sed 's/$/ includes/'
		symbol_edges "$2" "$1" | sed 's/$/ symbols/'
	} | awk '
		{
			k = $1 " -> " $3
			if (k in g)
				g[k] = g[k] "," $4
			else
				g[k] = $4
		}
		END { for (k in g) print k, g[k] }' | sort
}

dot_graph() {
	local src=$1 obj=$2 layers=$3
	[ -e "$layers" ] || layers=/dev/null
	{ modules "$src" | sed 's/^/module /'; edges_tagged "$src" "$obj"; } |
		awk "$layers_awk"'
		$1 == "module" { mod[$2]; next }
		{ edge[++n] = $0 }
		END {
			print "digraph modules {"
			printf "\tlabel=\"solid: #include and symbol; dashed: #include only; "
			print "dotted: symbol only; red: not downward in LAYERS\";"
			print "\tnode [shape=box, fontname=\"monospace\"];"
			# One rank per layer, kept in order by a chain of invisible edges between the
			# layer labels. Modules not in LAYERS go where dot puts them.
			for (l = 1; l <= nlayers; l++)
				members[l] = ""
			for (k = 1; k <= nnames; k++)
				if (order[k] in mod)
					members[layer[order[k]]] = members[layer[order[k]]] " \"" order[k] "\";"
			for (l = 1; l <= nlayers; l++) {
				printf "\t{ rank=same; L%d [shape=plaintext, label=\"layer %d\"];%s }\n",
					l, l, members[l]
				if (l > 1)
					printf "\tL%d -> L%d [style=invis];\n", l - 1, l
			}
			for (i = 1; i <= n; i++) {
				split(edge[i], e, " ")
				style = e[4] == "includes" ? "dashed" : e[4] == "symbols" ? "dotted" : "solid"
				bad = (e[1] in layer) && (e[3] in layer) && layer[e[3]] <= layer[e[1]]
				printf "\t\"%s\" -> \"%s\" [style=%s%s];\n", e[1], e[3], style,
					bad ? ", color=red, constraint=false" : ""
			}
			print "}"
		}' "$layers" -
}

check() {
	local src=$1 obj=$2 layers=$3 edges g
	[ -r "$layers" ] || { echo "no layers file $layers"; return 1; }
	edges=$(edges_tagged "$src" "$obj")
	{
		modules "$src" | sed 's/^/module /'
		echo "$edges"
		# Cycles are also edges that don't go down; naming them helps to see where to cut.
		for g in includes symbols; do
			echo "$edges" | awk -v g=$g 'index($4, g) { print $1, $2, $3 }' | cycles |
				sed "s/^/cycle $g /"
		done
	} | awk -v src="$src" -v layers="$layers" "$layers_awk"'
		$1 == "module" {
			mod[$2]
			if (!($2 in layer)) {
				print $2 ": in " src " but not in " layers
				bad++
			}
			next
		}
		$1 == "cycle" {
			g = $2
			$1 = $2 = ""
			sub(/^ +/, "")
			print "cycle in the " g " graph: " $0
			next
		}
		$2 == "->" {
			nedges++
			# An edge to or from a module not in LAYERS is reported as that module.
			if (!($1 in layer) || !($3 in layer) || layer[$3] > layer[$1])
				next
			g = $4
			gsub(/,/, ", ", g)
			printf "%s -> %s (%s is on layer %d, %s on layer %d) [%s]\n", $1, $3, $1,
				layer[$1], $3, layer[$3], g
			bad++
		}
		END {
			for (k = 1; k <= nnames; k++) {
				m = order[k]
				if (!(m in mod)) {
					printf "%s: listed in %s (line %d) but no file %s/%s.c or %s.h\n", m,
						layers, line[m], src, m, m
					bad++
				}
				if (m in dup) {
					printf "%s: listed more than once in %s (lines %d%s)\n", m, layers,
						line[m], dup[m]
					bad++
				}
			}
			if (bad) {
				printf "%d problems\n", bad
				exit 1
			}
			printf "OK: %d edges, all going down %d layers\n", nedges, nlayers
		}' "$layers" -
}

usage() {
	sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

mode=${1:-}
[ $# -gt 0 ] && shift
case $mode in
--includes) include_edges "${1:-$TOP/user}" ;;
--symbols) symbol_edges "${1:-$TOP/.output/user}" ;;
--cycles) cycles ;;
--dot) dot_graph "${1:-$TOP/user}" "${2:-$TOP/.output/user}" "${3:-${1:-$TOP/user}/LAYERS}" ;;
--check)
	[ $# = 3 ] || usage
	check "$@"
	;;
*) usage ;;
esac
