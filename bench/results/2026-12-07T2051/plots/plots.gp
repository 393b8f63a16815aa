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
set linetype 11 lw 2 dt 2
set linetype 12 lw 2 dt 2
set linetype 13 lw 2 dt 2
set linetype 14 lw 2 dt 2
set linetype 15 lw 2 dt 2
set linetype 16 lw 2 dt 2
set linetype 17 lw 2 dt 2
set linetype 18 lw 2 dt 2
set linetype 19 lw 2 dt 2
set output "bench/results/2026-12-07T2051/latency-cdf-64.png"
set terminal pngcairo size 1300,560 font "sans,10"
set multiplot layout 1,2 title "64 B request/response latency, one connection (all rounds merged)"
set logscale x
set xlabel "round-trip time (µs)"
set format x "%g"
set title "CDF"
set ylabel "fraction of round trips"
set yrange [0:1]
set key inside bottom right
plot "bench/results/2026-12-07T2051/plots/cdf-64-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "bench/results/2026-12-07T2051/plots/cdf-64-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-auto.dat" using 1:2 with steps lt 3 title "sockredir (default --mode auto)", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-bpf.dat" using 1:2 with steps lt 7 title "sockredir --mode bpf", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-bpf-upload.dat" using 1:2 with steps lt 10 title "sockredir --mode bpf --kernel-upload", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-splice.dat" using 1:2 with steps lt 11 title "sockredir --mode splice", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sd-proxyd.dat" using 1:2 with steps lt 14 title "systemd-socket-proxyd", \
  "bench/results/2026-12-07T2051/plots/cdf-64-socat.dat" using 1:2 with steps lt 15 title "socat", \
  "bench/results/2026-12-07T2051/plots/cdf-64-haproxy.dat" using 1:2 with steps lt 16 title "haproxy mode tcp", \
  "bench/results/2026-12-07T2051/plots/cdf-64-nginx.dat" using 1:2 with steps lt 18 title "nginx stream"
set title "tail"
set ylabel "fraction slower than x"
set logscale y
set yrange [1e-5:1]
set format y "10^{%T}"
set key inside top right
plot "bench/results/2026-12-07T2051/plots/cdf-64-direct.dat" using 1:(1-$2) with steps lt 1 title "direct to the Unix backend", \
  "bench/results/2026-12-07T2051/plots/cdf-64-direct-tcp.dat" using 1:(1-$2) with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-auto.dat" using 1:(1-$2) with steps lt 3 title "sockredir (default --mode auto)", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-bpf.dat" using 1:(1-$2) with steps lt 7 title "sockredir --mode bpf", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-bpf-upload.dat" using 1:(1-$2) with steps lt 10 title "sockredir --mode bpf --kernel-upload", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-splice.dat" using 1:(1-$2) with steps lt 11 title "sockredir --mode splice", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sd-proxyd.dat" using 1:(1-$2) with steps lt 14 title "systemd-socket-proxyd", \
  "bench/results/2026-12-07T2051/plots/cdf-64-socat.dat" using 1:(1-$2) with steps lt 15 title "socat", \
  "bench/results/2026-12-07T2051/plots/cdf-64-haproxy.dat" using 1:(1-$2) with steps lt 16 title "haproxy mode tcp", \
  "bench/results/2026-12-07T2051/plots/cdf-64-nginx.dat" using 1:(1-$2) with steps lt 18 title "nginx stream"
unset multiplot
unset logscale
set format y "%g"
set yrange [*:*]
unset title
set key outside right top
set terminal pngcairo size 1000,640 font "sans,10"
set output "bench/results/2026-12-07T2051/latency-cdf-sizes.png"
set terminal pngcairo size 1200,900 font "sans,9"
set multiplot layout 2,2
set logscale x
set yrange [0:1]
set xlabel "round-trip time (µs)"
set ylabel "fraction"
set key inside bottom right
set title "64 B messages"
plot "bench/results/2026-12-07T2051/plots/cdf-64-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "bench/results/2026-12-07T2051/plots/cdf-64-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-auto.dat" using 1:2 with steps lt 3 title "sockredir (default --mode auto)", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-bpf.dat" using 1:2 with steps lt 7 title "sockredir --mode bpf", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-bpf-upload.dat" using 1:2 with steps lt 10 title "sockredir --mode bpf --kernel-upload", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sr-splice.dat" using 1:2 with steps lt 11 title "sockredir --mode splice", \
  "bench/results/2026-12-07T2051/plots/cdf-64-sd-proxyd.dat" using 1:2 with steps lt 14 title "systemd-socket-proxyd", \
  "bench/results/2026-12-07T2051/plots/cdf-64-socat.dat" using 1:2 with steps lt 15 title "socat", \
  "bench/results/2026-12-07T2051/plots/cdf-64-haproxy.dat" using 1:2 with steps lt 16 title "haproxy mode tcp", \
  "bench/results/2026-12-07T2051/plots/cdf-64-nginx.dat" using 1:2 with steps lt 18 title "nginx stream"
set title "4 KiB messages"
plot "bench/results/2026-12-07T2051/plots/cdf-4096-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-sr-auto.dat" using 1:2 with steps lt 3 title "sockredir (default --mode auto)", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-sr-bpf.dat" using 1:2 with steps lt 7 title "sockredir --mode bpf", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-sr-bpf-upload.dat" using 1:2 with steps lt 10 title "sockredir --mode bpf --kernel-upload", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-sr-splice.dat" using 1:2 with steps lt 11 title "sockredir --mode splice", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-sd-proxyd.dat" using 1:2 with steps lt 14 title "systemd-socket-proxyd", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-socat.dat" using 1:2 with steps lt 15 title "socat", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-haproxy.dat" using 1:2 with steps lt 16 title "haproxy mode tcp", \
  "bench/results/2026-12-07T2051/plots/cdf-4096-nginx.dat" using 1:2 with steps lt 18 title "nginx stream"
set title "64 KiB messages"
plot "bench/results/2026-12-07T2051/plots/cdf-65536-direct.dat" using 1:2 with steps lt 1 title "direct to the Unix backend", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-direct-tcp.dat" using 1:2 with steps lt 2 title "direct to the backend on TCP (no proxy)", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-sr-auto.dat" using 1:2 with steps lt 3 title "sockredir (default --mode auto)", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-sr-bpf.dat" using 1:2 with steps lt 7 title "sockredir --mode bpf", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-sr-bpf-upload.dat" using 1:2 with steps lt 10 title "sockredir --mode bpf --kernel-upload", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-sr-splice.dat" using 1:2 with steps lt 11 title "sockredir --mode splice", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-sd-proxyd.dat" using 1:2 with steps lt 14 title "systemd-socket-proxyd", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-socat.dat" using 1:2 with steps lt 15 title "socat", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-haproxy.dat" using 1:2 with steps lt 16 title "haproxy mode tcp", \
  "bench/results/2026-12-07T2051/plots/cdf-65536-nginx.dat" using 1:2 with steps lt 18 title "nginx stream"
unset multiplot
unset logscale x
unset title
set key outside right top
set terminal pngcairo size 1000,640 font "sans,10"
set yrange [*:*]
set output "bench/results/2026-12-07T2051/throughput.png"
set title "Bulk throughput, 1 GiB in one connection (median, min–max)"
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.7 border -1
set ylabel "MB/s"
set xlabel ""
set yrange [0:*]
set xtics rotate by -25 left
set key inside top right
plot "bench/results/2026-12-07T2051/plots/throughput.dat" using 2:3:4:xtic(1) title "upload (client → backend)" lc rgb "#3b6ea5", \
  "" using 5:6:7 title "download (backend → client)" lc rgb "#e07b39"
unset style
set style data lines
set xtics norotate
set yrange [*:*]
set key outside right top
unset title
set output "bench/results/2026-12-07T2051/latency-vs-connections.png"
set terminal pngcairo size 1200,560 font "sans,10"
set multiplot layout 1,2 title "64 B request/response latency against concurrent connections (median over rounds; a missing point failed)"
set logscale xy
set xlabel "concurrent connections"
set ylabel "µs"
set format x "%g"
set key inside top left
set xrange [0.7:15000]
set title "p50"
plot "bench/results/2026-12-07T2051/plots/scale-direct.dat" using 1:2 with linespoints lt 1 pt 7 title "direct to the Unix backend", \
  "bench/results/2026-12-07T2051/plots/scale-direct-tcp.dat" using 1:2 with linespoints lt 2 pt 7 title "direct to the backend on TCP (no proxy)", \
  "bench/results/2026-12-07T2051/plots/scale-sr-auto.dat" using 1:2 with linespoints lt 3 pt 7 title "sockredir (default --mode auto)", \
  "bench/results/2026-12-07T2051/plots/scale-sr-bpf.dat" using 1:2 with linespoints lt 7 pt 7 title "sockredir --mode bpf", \
  "bench/results/2026-12-07T2051/plots/scale-sr-bpf-upload.dat" using 1:2 with linespoints lt 10 pt 7 title "sockredir --mode bpf --kernel-upload", \
  "bench/results/2026-12-07T2051/plots/scale-sr-splice.dat" using 1:2 with linespoints lt 11 pt 7 title "sockredir --mode splice", \
  "bench/results/2026-12-07T2051/plots/scale-sd-proxyd.dat" using 1:2 with linespoints lt 14 pt 7 title "systemd-socket-proxyd", \
  "bench/results/2026-12-07T2051/plots/scale-socat.dat" using 1:2 with linespoints lt 15 pt 7 title "socat", \
  "bench/results/2026-12-07T2051/plots/scale-haproxy.dat" using 1:2 with linespoints lt 16 pt 7 title "haproxy mode tcp", \
  "bench/results/2026-12-07T2051/plots/scale-nginx.dat" using 1:2 with linespoints lt 18 pt 7 title "nginx stream"
set title "p99"
plot "bench/results/2026-12-07T2051/plots/scale-direct.dat" using 1:3 with linespoints lt 1 pt 7 title "direct to the Unix backend", \
  "bench/results/2026-12-07T2051/plots/scale-direct-tcp.dat" using 1:3 with linespoints lt 2 pt 7 title "direct to the backend on TCP (no proxy)", \
  "bench/results/2026-12-07T2051/plots/scale-sr-auto.dat" using 1:3 with linespoints lt 3 pt 7 title "sockredir (default --mode auto)", \
  "bench/results/2026-12-07T2051/plots/scale-sr-bpf.dat" using 1:3 with linespoints lt 7 pt 7 title "sockredir --mode bpf", \
  "bench/results/2026-12-07T2051/plots/scale-sr-bpf-upload.dat" using 1:3 with linespoints lt 10 pt 7 title "sockredir --mode bpf --kernel-upload", \
  "bench/results/2026-12-07T2051/plots/scale-sr-splice.dat" using 1:3 with linespoints lt 11 pt 7 title "sockredir --mode splice", \
  "bench/results/2026-12-07T2051/plots/scale-sd-proxyd.dat" using 1:3 with linespoints lt 14 pt 7 title "systemd-socket-proxyd", \
  "bench/results/2026-12-07T2051/plots/scale-socat.dat" using 1:3 with linespoints lt 15 pt 7 title "socat", \
  "bench/results/2026-12-07T2051/plots/scale-haproxy.dat" using 1:3 with linespoints lt 16 pt 7 title "haproxy mode tcp", \
  "bench/results/2026-12-07T2051/plots/scale-nginx.dat" using 1:3 with linespoints lt 18 pt 7 title "nginx stream"
unset multiplot
unset logscale
set xrange [*:*]
unset title
set terminal pngcairo size 1000,560 font "sans,10"
set output "bench/results/2026-12-07T2051/memory-per-connection.png"
set title "Proxy RSS per connection (all its processes; held − idle)"
set logscale x
set xlabel "concurrent connections"
set ylabel "KiB"
set xrange [50:15000]
set yrange [0:*]
set key outside right top
plot "bench/results/2026-12-07T2051/plots/scale-sr-auto.dat" using 1:4 with linespoints lt 3 pt 7 title "sockredir (default --mode auto)", \
  "bench/results/2026-12-07T2051/plots/scale-sr-bpf.dat" using 1:4 with linespoints lt 7 pt 7 title "sockredir --mode bpf", \
  "bench/results/2026-12-07T2051/plots/scale-sr-bpf-upload.dat" using 1:4 with linespoints lt 10 pt 7 title "sockredir --mode bpf --kernel-upload", \
  "bench/results/2026-12-07T2051/plots/scale-sr-splice.dat" using 1:4 with linespoints lt 11 pt 7 title "sockredir --mode splice", \
  "bench/results/2026-12-07T2051/plots/scale-sd-proxyd.dat" using 1:4 with linespoints lt 14 pt 7 title "systemd-socket-proxyd", \
  "bench/results/2026-12-07T2051/plots/scale-socat.dat" using 1:4 with linespoints lt 15 pt 7 title "socat", \
  "bench/results/2026-12-07T2051/plots/scale-haproxy.dat" using 1:4 with linespoints lt 16 pt 7 title "haproxy mode tcp", \
  "bench/results/2026-12-07T2051/plots/scale-nginx.dat" using 1:4 with linespoints lt 18 pt 7 title "nginx stream"
set terminal pngcairo size 1500,620 font "sans,10"
set output "bench/results/2026-12-07T2051/http.png"
unset logscale
unset grid
set grid ytics
set style data lines
set style fill solid 0.85 border -1
set xlabel ""
set ylabel "× no proxy (TCP)"
set yrange [0:1.37445]
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5 lc "black"
set key outside bottom center horizontal Left reverse samplen 1.5 width 2
set multiplot layout 1,2 title "HTTP throughput through each proxy against the server with no proxy, at the judged connection counts\n(wrk; the ratio per round, its median and min–max over the rounds)"
set title "nginx"
set boxwidth 0.0736 absolute
set xrange [-0.6:2.6]
set xtics ("chatty ×50" 0, "bulk ×10" 1, "close ×20" 2)
plot "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 0 using 1:2 with boxes lt 1 lc rgb "#1f5fa8" title "sockredir (default --mode auto)" noenhanced, \
  "" index 0 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 0 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 1 using 1:2 with boxes lt 1 lc rgb "#7fa9d9" title "sockredir (default --mode auto) --workers 1" noenhanced, \
  "" index 1 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 1 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 2 using 1:2 with boxes lt 1 lc rgb "#2a8a3e" title "sockredir --mode bpf" noenhanced, \
  "" index 2 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 2 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 3 using 1:2 with boxes lt 1 lc rgb "#8fcf8f" title "sockredir --mode bpf --workers 1" noenhanced, \
  "" index 3 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 3 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 4 using 1:2 with boxes lt 1 lc rgb "#7b4aa8" title "sockredir --mode splice" noenhanced, \
  "" index 4 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 4 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 5 using 1:2 with boxes lt 1 lc rgb "#bfa2dc" title "sockredir --mode splice --workers 1" noenhanced, \
  "" index 5 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 5 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 6 using 1:2 with boxes lt 1 lc rgb "#e07b39" title "haproxy mode tcp" noenhanced, \
  "" index 6 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 6 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 7 using 1:2 with boxes lt 1 lc rgb "#f2b98f" title "haproxy mode tcp, nbthread 1" noenhanced, \
  "" index 7 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 7 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 8 using 1:2 with boxes lt 1 lc rgb "#c8323c" title "nginx stream" noenhanced, \
  "" index 8 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 8 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-nginx.dat" index 9 using 1:2 with boxes lt 1 lc rgb "#ec8f95" title "nginx stream, worker_processes 1" noenhanced, \
  "" index 9 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 9 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle
set title "caddy"
set boxwidth 0.1472 absolute
set xrange [-0.6:2.6]
set xtics ("chatty ×50" 0, "bulk ×10" 1, "close ×20" 2)
plot "bench/results/2026-12-07T2051/plots/http-caddy.dat" index 0 using 1:2 with boxes lt 1 lc rgb "#1f5fa8" title "sockredir (default --mode auto)" noenhanced, \
  "" index 0 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 0 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-caddy.dat" index 1 using 1:2 with boxes lt 1 lc rgb "#2a8a3e" title "sockredir --mode bpf" noenhanced, \
  "" index 1 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 1 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-caddy.dat" index 2 using 1:2 with boxes lt 1 lc rgb "#7b4aa8" title "sockredir --mode splice" noenhanced, \
  "" index 2 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 2 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-caddy.dat" index 3 using 1:2 with boxes lt 1 lc rgb "#e07b39" title "haproxy mode tcp" noenhanced, \
  "" index 3 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 3 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \
  "bench/results/2026-12-07T2051/plots/http-caddy.dat" index 4 using 1:2 with boxes lt 1 lc rgb "#c8323c" title "nginx stream" noenhanced, \
  "" index 4 using 1:3:(0):($4-$3) with vectors heads size screen 0.004,90 lt 1 lw 1.5 lc "black" notitle, \
  "" index 4 using 1:4:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle
unset multiplot
unset arrow 1
unset title
set xtics autofreq
set xrange [*:*]
set yrange [*:*]
set grid
set key outside right top
set terminal pngcairo size 1000,640 font "sans,10"
