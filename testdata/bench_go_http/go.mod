module bench_go_http

go 1.19
