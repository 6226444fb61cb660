package local

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// probeClient is shared by every probe: no keep-alives, so a probe measures
// a fresh connection as a new client would make it.
var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// check runs one probe against ip. A nil probe is a TCP connect to port.
func check(ctx context.Context, p *v1.Probe, ip string, port int32) error {
	timeout := time.Second
	if p != nil && p.TimeoutSeconds > 0 {
		timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p != nil && p.HTTPGet != nil:
		pp := p.HTTPGet.Port
		if pp == 0 {
			pp = port
		}
		path := p.HTTPGet.Path
		if path == "" {
			path = "/"
		}
		url := "http://" + net.JoinHostPort(ip, strconv.Itoa(int(pp))) + path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "berth-probe/1")
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP GET %s: status %d", path, resp.StatusCode)
		}
		return nil
	default:
		pp := port
		if p != nil && p.TCPSocket != nil && p.TCPSocket.Port != 0 {
			pp = p.TCPSocket.Port
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(int(pp))))
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// firstReadyInterval is how long to wait before polling readiness again,
// until the first success, for an instance that began to be polled
// `since` ago: a starting instance should get traffic as soon as it can
// take it (a Go server is ready a few milliseconds after its start, and
// every millisecond of polling granularity is a millisecond of cold
// start), while one that takes seconds to start is not polled a thousand
// times for it.
func firstReadyInterval(since time.Duration) time.Duration {
	switch {
	case since < 100*time.Millisecond:
		return time.Millisecond
	case since < time.Second:
		return 5 * time.Millisecond
	default:
		return 20 * time.Millisecond
	}
}

// readinessLoop keeps status.ready in step with the readiness probe (or,
// without one, the port accepting connections once).
func (r *runner) readinessLoop(ctx context.Context, t *v1.Template, ip string, adopted bool) {
	p := t.ReadinessProbe
	ready := false
	if adopted {
		ready = r.object().Status.Ready
	}
	if !adopted && !r.thawed && p != nil && p.InitialDelaySeconds > 0 {
		if !sleepCtx(ctx, time.Duration(p.InitialDelaySeconds)*time.Second) {
			return
		}
	}
	// Fast phase: poll until the first success.
	if !ready {
		polled := time.Now()
		for {
			if check(ctx, p, ip, t.Port) == nil {
				break
			}
			if !sleepCtx(ctx, firstReadyInterval(time.Since(polled))) {
				return
			}
		}
		ready = true
		r.setReady(ctx, true)
	}
	if p == nil {
		return
	}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	successes, failures := 0, 0
	for sleepCtx(ctx, period) {
		if err := check(ctx, p, ip, t.Port); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			successes = 0
			if ready && failures >= int(max(p.FailureThreshold, 1)) {
				ready = false
				r.log.Info("readiness probe failing", "err", err)
				r.setReady(ctx, false)
			}
			continue
		}
		successes++
		failures = 0
		if !ready && successes >= int(max(p.SuccessThreshold, 1)) {
			ready = true
			r.setReady(ctx, true)
		}
	}
}

func (r *runner) setReady(ctx context.Context, ready bool) {
	startedAt := r.startedAt
	var start *v1.StartPhases
	if ready {
		start = r.finishStart(time.Now())
	}
	change := func(st *v1.InstanceStatus) {
		st.Ready = ready
		st.Phase = v1.PhaseRunning
		if startedAt.After(st.StartedAt) {
			st.StartedAt = startedAt
		}
		if start != nil {
			st.Start = start
		}
	}
	inst := r.object()
	if r.a.readyNow != nil {
		// Said before it is written: the gateway need not wait for the
		// disk sync to route to a woken instance.
		st := inst.Status
		change(&st)
		r.a.readyNow(inst, st)
	}
	err := r.patchStatus(ctx, change)
	if err != nil {
		if r.a.readyNow != nil && ready {
			// Not recorded: withdraw the word.
			st := inst.Status
			st.Ready = false
			r.a.readyNow(inst, st)
		}
		if ctx.Err() == nil {
			r.log.Warn("record readiness", "err", err)
		}
	}
}

// livenessLoop reports on fail once the liveness probe has failed
// failureThreshold times in a row.
func (r *runner) livenessLoop(ctx context.Context, t *v1.Template, ip string, fail chan<- string) {
	p := t.LivenessProbe
	if !sleepCtx(ctx, time.Duration(p.InitialDelaySeconds)*time.Second) {
		return
	}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	failures := 0
	for sleepCtx(ctx, period) {
		err := check(ctx, p, ip, t.Port)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			continue
		}
		failures++
		if failures >= int(max(p.FailureThreshold, 1)) {
			select {
			case fail <- err.Error():
			default:
			}
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
