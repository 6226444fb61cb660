package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/activator"
	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/autoscaler"
	"berth.dev/berth/internal/controller"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/queue"
)

// scalerAdapter lets the function controller drive the autoscaler in its
// own terms.
type scalerAdapter struct{ a *autoscaler.Autoscaler }

func (s scalerAdapter) Set(env, name string, p controller.ScaleParams) {
	s.a.Set(env, name, autoscaler.Params{
		Concurrency:       p.Concurrency,
		TargetUtilization: p.TargetUtilization,
		Min:               p.Min,
		Max:               p.Max,
		IdleTimeout:       p.IdleTimeout,
	}, p.Ready)
}
func (s scalerAdapter) Remove(env, name string)       { s.a.Remove(env, name) }
func (s scalerAdapter) Desired(env, name string) int  { return s.a.Desired(env, name) }
func (s scalerAdapter) Standbys(env, name string) int { return s.a.Standbys(env, name) }

func (s scalerAdapter) KeepAlive(env, name string) (*v1.KeepAliveStatus, bool) {
	st, ok := s.a.Status(env, name)
	if !ok {
		return nil, false
	}
	k := st.KeepAlive
	return &v1.KeepAliveStatus{
		IdleTimeout: k.IdleTimeout.String(), StandbyIdle: k.StandbyIdle.String(),
		Standby: st.Standby, Standbys: st.Standbys, Learned: k.Learned, Reason: k.Reason,
	}, true
}

// loadStats is what a function's status reports of its traffic: requests
// in the gateway now, and the activator's cold starts.
type loadStats struct {
	gateway   *gateway.Gateway
	activator *activator.Activator
}

func (l *loadStats) Stats(env, name string) (int, int64, *v1.ColdStart) {
	inFlight, _ := l.gateway.Load(env, name)
	_, cold, last := l.activator.Stats(env, name)
	return inFlight, cold, last
}

// invocations serves the API's invocation endpoints: synchronous calls
// through the gateway, the rest through the queue.
type invocations struct {
	*gatewayInvoker
	q *queue.Queue
}

func (i invocations) Enqueue(ctx context.Context, env, fn string, body []byte, header http.Header, callbackURL string) (string, error) {
	return i.q.Enqueue(ctx, env, fn, body, header, callbackURL)
}

func (i invocations) Get(ctx context.Context, env, id string) (v1.Invocation, error) {
	return i.q.Get(ctx, env, id)
}

func (i invocations) Publish(ctx context.Context, env, topic string, body []byte, header http.Header) (string, error) {
	return i.q.Publish(ctx, env, topic, body, header)
}

// setQueueFunctions hands the queue every function's async settings and
// triggers (level-triggered: the whole list each time).
func (s *Server) setQueueFunctions(fns []*v1.Function) {
	out := make([]queue.Function, 0, len(fns))
	for _, f := range fns {
		qf := queue.Function{
			Environment:     f.Metadata.Environment,
			Name:            f.Metadata.Name,
			Timeout:         controller.FunctionTimeout(f),
			MaxRetries:      2,
			Backoff:         time.Second,
			DeadLetterTopic: f.Spec.Async.DeadLetterTopic,
		}
		if f.Spec.Async.MaxRetries != nil {
			qf.MaxRetries = int(*f.Spec.Async.MaxRetries)
		}
		if d, err := time.ParseDuration(f.Spec.Async.Backoff); err == nil && d > 0 {
			qf.Backoff = d
		}
		for _, t := range f.Spec.Triggers {
			switch {
			case t.Topic != "":
				qf.Topics = append(qf.Topics, t.Topic)
			case t.Cron != "":
				qf.Crons = append(qf.Crons, queue.Cron{Schedule: t.Cron, Data: t.Data})
			}
		}
		out = append(out, qf)
	}
	if err := s.queue.SetFunctions(out); err != nil {
		s.log.Warn("queue: some function settings were refused", "err", err)
	}
}

// keepGaps carries the functions' learned idle gaps across restarts: read
// from the data dir now, written back every minute and when the server
// stops, so a restart does not send every function back to the default
// keep-alive.
func (s *Server) keepGaps(a *autoscaler.Autoscaler) {
	path := filepath.Join(s.cfg.DataDir, "keepalive.json")
	if raw, err := os.ReadFile(path); err == nil {
		var saved map[string][]time.Duration
		if err := json.Unmarshal(raw, &saved); err != nil {
			s.log.Warn("keep-alive gaps unreadable; learning again", "file", path, "err", err)
		} else {
			a.RestoreGaps(saved)
		}
	}
	// Written only when it changed: an idle server does not sync a file
	// to disk every minute.
	var saved []byte
	save := func() {
		raw, err := json.Marshal(a.Gaps())
		if err == nil && bytes.Equal(raw, saved) {
			return
		}
		if err == nil {
			err = atomicfile.WriteFile(path, raw, 0o600)
		}
		if err != nil {
			s.log.Warn("save keep-alive gaps", "file", path, "err", err)
			return
		}
		saved = raw
	}
	s.addPart("keepalive", func(ctx context.Context) error {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				save()
				return nil
			case <-t.C:
				save()
			}
		}
	})
}
