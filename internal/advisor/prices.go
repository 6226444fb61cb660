package advisor

import (
	"runtime"
	"sync"

	v1 "berth.dev/berth/api/v1"
)

// DefaultPrices are AWS's published on-demand list prices in US East (N.
// Virginia), Linux/x86, without free tiers or savings plans: Lambda's for
// the Function way (per request and per GB-second of duration, which
// since August 2025 includes a cold start's initialisation) and Fargate's
// for the Service way (per vCPU-hour and GB-hour of a running task).
// Prices in a sheet are per instance of the workload's own CPU and memory
// limits, not rounded up to the sizes either service sells.
func DefaultPrices() v1.PriceSheet {
	f := func(x float64) *float64 { return &x }
	return v1.PriceSheet{
		Name:     "AWS list prices, us-east-1, Linux/x86: Lambda (aws.amazon.com/lambda/pricing) and Fargate (aws.amazon.com/fargate/pricing)",
		Date:     "2026-03-10",
		Currency: "USD",
		Function: v1.Prices{PerRequest: f(0.20 / 1e6), PerGBSecond: f(0.0000166667), PerVCPUHour: f(0), PerGBHour: f(0)},
		Service:  v1.Prices{PerRequest: f(0), PerGBSecond: f(0), PerVCPUHour: f(0.04048), PerGBHour: f(0.004445)},
	}
}

// parallel runs f(0..n-1) on up to GOMAXPROCS goroutines: replays are
// CPU-bound and independent.
func parallel(n int, f func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
