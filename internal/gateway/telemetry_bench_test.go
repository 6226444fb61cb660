package gateway

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"berth.dev/berth/internal/telemetry/tracing"
)

// BenchmarkTelemetry is what counting and tracing add to one request, on
// their own (no network), from both cores at once as under load:
//
//	go test ./internal/gateway -run '^$' -bench Telemetry -benchmem
func BenchmarkTelemetry(b *testing.B) {
	g := New(Config{})
	g.SetTargets([]Target{{Environment: "bench", Name: "echo", Kind: "Service", Endpoints: []Endpoint{{ID: "e", Address: "127.0.0.1:1"}}}})
	rt := g.table.Load().byHost["echo.bench"]
	b.Run("metrics", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g.metrics.observe(rt, 1, 200, time.Millisecond)
			}
		})
	})
	for _, ratio := range []float64{tracing.DefaultSampleRatio, 1} {
		tr, err := tracing.New(tracing.Config{SampleRatio: ratio})
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Shutdown(context.Background())
		tg := New(Config{TracerProvider: tr.TracerProvider(), SampleRatio: tr.SampleRatio()})
		u, _ := url.Parse("/")
		b.Run("tracing "+map[bool]string{true: "all", false: "default"}[ratio == 1], func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := &http.Request{Method: "GET", URL: u, Host: "echo.bench.berth.localhost", Header: http.Header{}}
				var sp serverSpan
				for pb.Next() {
					ctx := tg.startServerSpan(context.Background(), &sp, r, rt, time.Now())
					h := http.Header{}
					if s := tg.startUpstreamSpan(ctx, h, &call{route: rt, span: &sp}, &endpoint{id: "e", address: "x"}, 1); s != nil {
						endUpstreamSpan(s, 200, nil)
					}
					sp.end(200, 1, nil)
				}
			})
		})
	}
}
