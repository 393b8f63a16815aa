set terminal pngcairo size 1000,640 font "sans,10"
set datafile separator "\t"
set grid
set key outside right top
set linetype 1 lw 2 dt 1
set linetype 2 lw 2 dt 1
set linetype 3 lw 2 dt 1
set linetype 4 lw 2 dt 1
set linetype 5 lw 2 dt 2
set linetype 6 lw 2 dt 2
set linetype 7 lw 2 dt 2
set linetype 8 lw 2 dt 2
set linetype 9 lw 2 dt 2
set linetype 10 lw 2 dt 2
set output "/work/main/bench/results/2026-11-25T1137/latency-cdf-64.png"
set terminal pngcairo size 1300,560 font "sans,10"
set multiplot layout 1,2 title "64 B request/response latency, one connection (all rounds merged)"
set logscale x
set xlabel "round-trip time (µs)"
set format x "%g"
set title "CDF"
set ylabel "fraction of round trips"
set yrange [0:1]
set key inside bottom right
plot "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf.dat" using 1:2 with steps lt 3 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf-1w.dat" using 1:2 with steps lt 4 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf-upload.dat" using 1:2 with steps lt 5 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-splice.dat" using 1:2 with steps lt 6 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sd-proxyd.dat" using 1:2 with steps lt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-socat.dat" using 1:2 with steps lt 8 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-haproxy.dat" using 1:2 with steps lt 9 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-nginx.dat" using 1:2 with steps lt 10 title "nginx stream"
set title "tail"
set ylabel "fraction slower than x"
set logscale y
set yrange [1e-5:1]
set format y "10^{%T}"
set key inside top right
plot "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-direct.dat" using 1:(1-$2) with steps lt 1 title "direct to the Unix backend", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-direct-tcp.dat" using 1:(1-$2) with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf.dat" using 1:(1-$2) with steps lt 3 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf-1w.dat" using 1:(1-$2) with steps lt 4 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf-upload.dat" using 1:(1-$2) with steps lt 5 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-splice.dat" using 1:(1-$2) with steps lt 6 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sd-proxyd.dat" using 1:(1-$2) with steps lt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-socat.dat" using 1:(1-$2) with steps lt 8 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-haproxy.dat" using 1:(1-$2) with steps lt 9 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-nginx.dat" using 1:(1-$2) with steps lt 10 title "nginx stream"
unset multiplot
unset logscale
set format y "%g"
set yrange [*:*]
unset title
set key outside right top
set terminal pngcairo size 1000,640 font "sans,10"
set output "/work/main/bench/results/2026-11-25T1137/latency-cdf-sizes.png"
set terminal pngcairo size 1200,900 font "sans,9"
set multiplot layout 2,2
set logscale x
set yrange [0:1]
set xlabel "round-trip time (µs)"
set ylabel "fraction"
set key inside bottom right
set title "1 B messages"
plot "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-sr-bpf.dat" using 1:2 with steps lt 3 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-sr-bpf-1w.dat" using 1:2 with steps lt 4 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-sr-bpf-upload.dat" using 1:2 with steps lt 5 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-sr-splice.dat" using 1:2 with steps lt 6 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-sd-proxyd.dat" using 1:2 with steps lt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-socat.dat" using 1:2 with steps lt 8 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-haproxy.dat" using 1:2 with steps lt 9 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-1-nginx.dat" using 1:2 with steps lt 10 title "nginx stream"
set title "64 B messages"
plot "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf.dat" using 1:2 with steps lt 3 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf-1w.dat" using 1:2 with steps lt 4 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-bpf-upload.dat" using 1:2 with steps lt 5 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sr-splice.dat" using 1:2 with steps lt 6 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-sd-proxyd.dat" using 1:2 with steps lt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-socat.dat" using 1:2 with steps lt 8 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-haproxy.dat" using 1:2 with steps lt 9 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-64-nginx.dat" using 1:2 with steps lt 10 title "nginx stream"
set title "4 KiB messages"
plot "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-sr-bpf.dat" using 1:2 with steps lt 3 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-sr-bpf-1w.dat" using 1:2 with steps lt 4 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-sr-bpf-upload.dat" using 1:2 with steps lt 5 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-sr-splice.dat" using 1:2 with steps lt 6 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-sd-proxyd.dat" using 1:2 with steps lt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-socat.dat" using 1:2 with steps lt 8 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-haproxy.dat" using 1:2 with steps lt 9 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-4096-nginx.dat" using 1:2 with steps lt 10 title "nginx stream"
set title "64 KiB messages"
plot "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-sr-bpf.dat" using 1:2 with steps lt 3 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-sr-bpf-1w.dat" using 1:2 with steps lt 4 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-sr-bpf-upload.dat" using 1:2 with steps lt 5 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-sr-splice.dat" using 1:2 with steps lt 6 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-sd-proxyd.dat" using 1:2 with steps lt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-socat.dat" using 1:2 with steps lt 8 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-haproxy.dat" using 1:2 with steps lt 9 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/cdf-65536-nginx.dat" using 1:2 with steps lt 10 title "nginx stream"
unset multiplot
unset logscale x
unset title
set key outside right top
set terminal pngcairo size 1000,640 font "sans,10"
set yrange [*:*]
set output "/work/main/bench/results/2026-11-25T1137/throughput.png"
set title "Bulk throughput, 1 GiB in one connection (median, min–max)"
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.7 border -1
set ylabel "MB/s"
set xlabel ""
set yrange [0:*]
set xtics rotate by -25 left
set key inside top right
plot "/work/main/bench/results/2026-11-25T1137/plots/throughput.dat" using 2:3:4:xtic(1) title "upload (client → backend)" lc rgb "#3b6ea5", \
  "" using 5:6:7 title "download (backend → client)" lc rgb "#e07b39"
unset style
set style data lines
set xtics norotate
set yrange [*:*]
set key outside right top
unset title
set output "/work/main/bench/results/2026-11-25T1137/latency-vs-connections.png"
set terminal pngcairo size 1200,560 font "sans,10"
set multiplot layout 1,2 title "64 B request/response latency against concurrent connections (median over rounds; a missing point failed)"
set logscale xy
set xlabel "concurrent connections"
set ylabel "µs"
set format x "%g"
set key inside top left
set xrange [0.7:15000]
set title "p50"
plot "/work/main/bench/results/2026-11-25T1137/plots/scale-direct.dat" using 1:2 with linespoints lt 1 pt 7 title "direct to the Unix backend", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-direct-tcp.dat" using 1:2 with linespoints lt 2 pt 7 title "direct to the backend on TCP (no proxy)", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf.dat" using 1:2 with linespoints lt 3 pt 7 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf-1w.dat" using 1:2 with linespoints lt 4 pt 7 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf-upload.dat" using 1:2 with linespoints lt 5 pt 7 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-splice.dat" using 1:2 with linespoints lt 6 pt 7 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sd-proxyd.dat" using 1:2 with linespoints lt 7 pt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-socat.dat" using 1:2 with linespoints lt 8 pt 7 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-haproxy.dat" using 1:2 with linespoints lt 9 pt 7 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-nginx.dat" using 1:2 with linespoints lt 10 pt 7 title "nginx stream"
set title "p99"
plot "/work/main/bench/results/2026-11-25T1137/plots/scale-direct.dat" using 1:3 with linespoints lt 1 pt 7 title "direct to the Unix backend", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-direct-tcp.dat" using 1:3 with linespoints lt 2 pt 7 title "direct to the backend on TCP (no proxy)", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf.dat" using 1:3 with linespoints lt 3 pt 7 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf-1w.dat" using 1:3 with linespoints lt 4 pt 7 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf-upload.dat" using 1:3 with linespoints lt 5 pt 7 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-splice.dat" using 1:3 with linespoints lt 6 pt 7 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sd-proxyd.dat" using 1:3 with linespoints lt 7 pt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-socat.dat" using 1:3 with linespoints lt 8 pt 7 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-haproxy.dat" using 1:3 with linespoints lt 9 pt 7 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-nginx.dat" using 1:3 with linespoints lt 10 pt 7 title "nginx stream"
unset multiplot
unset logscale
set xrange [*:*]
unset title
set terminal pngcairo size 1000,560 font "sans,10"
set output "/work/main/bench/results/2026-11-25T1137/memory-per-connection.png"
set title "Proxy RSS per connection (all its processes; held − idle)"
set logscale x
set xlabel "concurrent connections"
set ylabel "KiB"
set xrange [50:15000]
set yrange [0:*]
set key outside right top
plot "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf.dat" using 1:4 with linespoints lt 3 pt 7 title "sockredir --mode bpf", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf-1w.dat" using 1:4 with linespoints lt 4 pt 7 title "sockredir --mode bpf --workers 1", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-bpf-upload.dat" using 1:4 with linespoints lt 5 pt 7 title "sockredir --mode bpf --kernel-upload", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sr-splice.dat" using 1:4 with linespoints lt 6 pt 7 title "sockredir --mode splice", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-sd-proxyd.dat" using 1:4 with linespoints lt 7 pt 7 title "systemd-socket-proxyd", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-socat.dat" using 1:4 with linespoints lt 8 pt 7 title "socat", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-haproxy.dat" using 1:4 with linespoints lt 9 pt 7 title "haproxy mode tcp", \
  "/work/main/bench/results/2026-11-25T1137/plots/scale-nginx.dat" using 1:4 with linespoints lt 10 pt 7 title "nginx stream"
