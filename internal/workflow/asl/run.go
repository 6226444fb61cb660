package asl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// Run executes the machine to completion. The output is the final state's
// output; a failure of the execution is an *Error (a machine-level
// TimeoutSeconds that expires is States.Timeout). Any other error — ctx done,
// invalid input — means the execution did not finish: the caller may run it
// again from the start with the same journal.
func (m *Machine) Run(ctx context.Context, input json.RawMessage, cobj ContextObject, rt Runtime) (json.RawMessage, error) {
	in, err := decodeValue(input)
	if err != nil {
		return nil, v1.Invalid("the execution input is not JSON: %v", err)
	}
	r := &runner{rt: rt, cobj: cobj, execInput: in}
	if len(cobj.Input) > 0 {
		if r.execInput, err = decodeValue(cobj.Input); err != nil {
			return nil, v1.Invalid("the context object's input is not JSON: %v", err)
		}
	}
	if m.TimeoutSeconds > 0 {
		r.deadline = cobj.StartTime.Add(time.Duration(m.TimeoutSeconds) * time.Second)
	}
	rt.Record(Event{Type: "ExecutionStarted", Details: encodeValue(map[string]any{"input": in})})
	out, err := r.machine(ctx, m, in, &scope{visits: map[string]int{}, rec: rt.Record})
	var se *Error
	var te *execTimeout
	switch {
	case err == nil:
		rt.Record(Event{Type: "ExecutionSucceeded", Details: encodeValue(map[string]any{"output": out})})
		return encodeValue(out), nil
	case errors.As(err, &te):
		se = &Error{Name: ErrTimeout, Cause: fmt.Sprintf("the execution exceeded its TimeoutSeconds (%d)", m.TimeoutSeconds)}
		rt.Record(Event{Type: "ExecutionTimedOut", Details: errorDetails(se)})
		return nil, se
	case errors.As(err, &se):
		rt.Record(Event{Type: "ExecutionFailed", Details: errorDetails(se)})
		return nil, se
	}
	return nil, err
}

func errorDetails(e *Error) json.RawMessage {
	return encodeValue(map[string]any{"error": e.Name, "cause": e.Cause})
}

// execTimeout ends the execution when the machine's TimeoutSeconds expires.
// It is not an *Error so that no Retry or Catch can intercept it.
type execTimeout struct{}

func (*execTimeout) Error() string { return "the execution timed out" }

type runner struct {
	rt        Runtime
	cobj      ContextObject
	execInput any
	deadline  time.Time
}

// scope is one sequential thread of states: the execution, a Parallel
// branch or a Map iteration.
type scope struct {
	prefix  string
	visits  map[string]int
	rec     func(Event)
	mapItem map[string]any // $$.Map.Item, for ItemSelector
}

var keyEscaper = strings.NewReplacer("%", "%25", "/", "%2F", "#", "%23", "[", "%5B", "]", "%5D")

func (r *runner) machine(ctx context.Context, m *Machine, input any, sc *scope) (any, error) {
	name := m.StartAt
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s := m.States[name]
		sc.visits[name]++
		v := &visit{r: r, s: s, sc: sc, key: sc.prefix + keyEscaper.Replace(name) + "#" + strconv.Itoa(sc.visits[name])}
		out, next, err := v.run(ctx, input)
		if err != nil {
			return nil, err
		}
		if next == "" {
			return out, nil
		}
		name, input = next, out
	}
}

// visit is one entry into a state.
type visit struct {
	r   *runner
	s   *State
	sc  *scope
	key string

	mu         sync.Mutex // entered is read by concurrent ItemSelector evaluations
	entered    time.Time
	hasEntered bool
	retryCount int
	// clock is the latest runtime time the visit knows, to bound task
	// timeouts by the execution deadline.
	clock time.Time
}

func (v *visit) enteredAt() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.hasEntered {
		v.entered, v.hasEntered = v.r.rt.Now(v.key+"/entered"), true
		v.clock = v.entered
	}
	return v.entered
}

func (v *visit) record(typ string, details map[string]any) {
	v.sc.rec(Event{Type: typ, StateName: v.s.Name, Key: v.key, Details: encodeValue(details)})
}

func (v *visit) env(base string, input any) *evalEnv {
	return &evalEnv{v: v, base: base, input: input, mapItem: v.sc.mapItem}
}

func runtimeErr(format string, args ...any) *Error {
	return &Error{Name: ErrRuntime, Cause: fmt.Sprintf(format, args...)}
}

func (v *visit) run(ctx context.Context, raw any) (any, string, error) {
	s := v.s
	if !v.r.deadline.IsZero() && !v.enteredAt().Before(v.r.deadline) {
		return nil, "", &execTimeout{}
	}
	v.record(s.Type+"StateEntered", map[string]any{"name": s.Name, "input": raw})
	if s.Type == "Fail" {
		return nil, "", v.fail(raw)
	}
	var out any
	var next string
	var err error
	eff, err := v.inputPath(raw)
	if err == nil {
		switch s.Type {
		case "Pass":
			out, err = v.pass(raw, eff)
			next = s.Next
		case "Succeed":
			out, err = v.outputPath(eff)
		case "Choice":
			next, err = v.choose(eff)
			if err == nil {
				out, err = v.outputPath(eff)
			}
		case "Wait":
			err = v.wait(ctx, eff)
			if err == nil {
				out, err = v.outputPath(eff)
			}
			next = s.Next
		case "Task", "Parallel", "Map":
			out, next, err = v.withRetry(ctx, raw, eff)
		}
	}
	if err != nil {
		return nil, "", err
	}
	v.record(s.Type+"StateExited", map[string]any{"name": s.Name, "output": out})
	return out, next, nil
}

func (v *visit) lookup(p *jpath, input any) (any, bool) {
	if p.context {
		return p.get(v.contextObject(p, v.sc.mapItem))
	}
	return p.get(input)
}

func (v *visit) inputPath(raw any) (any, error) {
	ip := v.s.inputPath
	if ip.null {
		return map[string]any{}, nil
	}
	if ip.p == nil {
		return raw, nil
	}
	x, ok := v.lookup(ip.p, raw)
	if !ok {
		return nil, runtimeErr("InputPath %s of state %s matched nothing in the input", ip.p.raw, v.s.Name)
	}
	return x, nil
}

func (v *visit) outputPath(x any) (any, error) {
	op := v.s.outputPath
	if op.null {
		return map[string]any{}, nil
	}
	if op.p == nil {
		return x, nil
	}
	out, ok := v.lookup(op.p, x)
	if !ok {
		return nil, runtimeErr("OutputPath %s of state %s matched nothing in the output", op.p.raw, v.s.Name)
	}
	return out, nil
}

// resultPath places result into the state's raw input.
func resultPath(rp optPath, raw, result any) (any, error) {
	if rp.null {
		return raw, nil
	}
	if rp.p == nil {
		return result, nil
	}
	out, err := rp.p.set(raw, result)
	if err != nil {
		return nil, &Error{Name: ErrResultPathMatchFailure, Cause: err.Error()}
	}
	return out, nil
}

// finish applies ResultSelector, ResultPath and OutputPath to a result.
func (v *visit) finish(env *evalEnv, raw, result any) (any, error) {
	if v.s.resultSelector != nil {
		env.input = result
		var err error
		if result, err = v.s.resultSelector.eval(env, v.s.field+".ResultSelector"); err != nil {
			return nil, err
		}
	}
	out, err := resultPath(v.s.resultPath, raw, result)
	if err != nil {
		return nil, err
	}
	return v.outputPath(out)
}

func (v *visit) pass(raw, eff any) (any, error) {
	result := eff
	if v.s.parameters != nil {
		var err error
		if result, err = v.s.parameters.eval(v.env(v.key+"/", eff), v.s.field+".Parameters"); err != nil {
			return nil, err
		}
	}
	if v.s.hasResult {
		result = v.s.result
	}
	out, err := resultPath(v.s.resultPath, raw, result)
	if err != nil {
		return nil, err
	}
	return v.outputPath(out)
}

func (v *visit) fail(raw any) error {
	e := &Error{Name: v.s.errorName, Cause: v.s.cause}
	eval := func(x *expr, what string) (string, error) {
		var val any
		if x.call != nil {
			var err error
			if val, err = x.call.eval(v.env(v.key+"/", raw)); err != nil {
				return "", err
			}
		} else {
			var ok bool
			if val, ok = v.lookup(x.path, raw); !ok {
				return "", runtimeErr("%s %s of state %s matched nothing in the input", what, x.path.raw, v.s.Name)
			}
		}
		s, ok := val.(string)
		if !ok {
			return "", runtimeErr("%s of state %s must give a string, not %s", what, v.s.Name, typeName(val))
		}
		return s, nil
	}
	var err error
	if v.s.errorExpr != nil {
		if e.Name, err = eval(v.s.errorExpr, "ErrorPath"); err != nil {
			return err
		}
	}
	if v.s.causeExp != nil {
		if e.Cause, err = eval(v.s.causeExp, "CausePath"); err != nil {
			return err
		}
	}
	return e
}

func (v *visit) wait(ctx context.Context, eff any) error {
	s := v.s
	var at time.Time
	switch {
	case s.hasWaitSeconds:
		at = v.enteredAt().Add(time.Duration(s.waitSeconds) * time.Second)
	case s.hasTimestamp:
		at = s.timestamp
	case s.secondsPath != nil:
		x, ok := v.lookup(s.secondsPath, eff)
		n, isInt := toInt(x)
		if !ok || !isInt || n < 0 {
			return runtimeErr("SecondsPath %s of state %s must name a non-negative whole number, got %s", s.secondsPath.raw, s.Name, describe(x, ok))
		}
		at = v.enteredAt().Add(time.Duration(n) * time.Second)
	case s.timestampPath != nil:
		x, ok := v.lookup(s.timestampPath, eff)
		str, _ := x.(string)
		t, err := parseTimestamp(str)
		if !ok || err != nil {
			return runtimeErr("TimestampPath %s of state %s must name an RFC 3339 timestamp, got %s", s.timestampPath.raw, s.Name, describe(x, ok))
		}
		at = t
	}
	return v.sleep(ctx, v.key+"/wait", at)
}

// sleep waits until at, or until the execution deadline if that comes first.
func (v *visit) sleep(ctx context.Context, key string, at time.Time) error {
	d := v.r.deadline
	timedOut := !d.IsZero() && at.After(d)
	if timedOut {
		at = d
	}
	if err := v.r.rt.SleepUntil(ctx, key, at); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if timedOut {
		return &execTimeout{}
	}
	v.mu.Lock()
	v.clock = at
	v.mu.Unlock()
	return nil
}

func describe(x any, ok bool) string {
	if !ok {
		return "nothing"
	}
	return string(encodeValue(x))
}

// matches is ErrorEquals: States.ALL matches every error but States.Runtime,
// and States.TaskFailed every error but States.Timeout and States.Runtime.
func matches(names []string, err string) bool {
	for _, n := range names {
		switch {
		case n == err:
			return true
		case err == ErrRuntime:
		case n == ErrAll:
			return true
		case n == ErrTaskFailed && err != ErrTimeout:
			return true
		}
	}
	return false
}

// withRetry runs the attempts of a Task, Parallel or Map state under its
// Retry and Catch.
func (v *visit) withRetry(ctx context.Context, raw, eff any) (any, string, error) {
	s := v.s
	counts := make([]int, len(s.retry))
	for attempt := 1; ; attempt++ {
		akey := v.key + "/a" + strconv.Itoa(attempt)
		v.retryCount = attempt - 1
		var out any
		var err error
		switch s.Type {
		case "Task":
			out, err = v.task(ctx, raw, eff, attempt, akey)
		case "Parallel":
			out, err = v.parallel(ctx, raw, eff, akey)
		case "Map":
			out, err = v.mapState(ctx, raw, eff, akey)
		}
		if err == nil {
			return out, s.Next, nil
		}
		var se *Error
		if !errors.As(err, &se) {
			return nil, "", err
		}
		if ri := v.retrier(se.Name); ri >= 0 && counts[ri] < s.retry[ri].maxAttempts {
			r := s.retry[ri]
			delay := float64(r.intervalSeconds) * math.Pow(r.backoffRate, float64(counts[ri]))
			if r.maxDelaySeconds > 0 {
				delay = math.Min(delay, float64(r.maxDelaySeconds))
			}
			if r.fullJitter {
				delay *= v.r.rt.Random(akey + "/jitter")
			}
			counts[ri]++
			now := v.r.rt.Now(akey + "/failed")
			at := now.Add(time.Duration(delay * float64(time.Second)))
			if err := v.sleep(ctx, akey+"/retry", at); err != nil {
				return nil, "", err
			}
			continue
		}
		for _, c := range s.catch {
			if matches(c.errorEquals, se.Name) {
				out, err := resultPath(c.resultPath, raw, map[string]any{"Error": se.Name, "Cause": se.Cause})
				if err != nil {
					return nil, "", err
				}
				return out, c.next, nil
			}
		}
		return nil, "", se
	}
}

func (v *visit) retrier(name string) int {
	for i, r := range v.s.retry {
		if matches(r.errorEquals, name) {
			return i
		}
	}
	return -1
}

func (v *visit) seconds(p *jpath, fixed int, eff any, what string) (time.Duration, error) {
	if p == nil {
		return time.Duration(fixed) * time.Second, nil
	}
	x, ok := v.lookup(p, eff)
	n, isInt := toInt(x)
	if !ok || !isInt || n <= 0 {
		return 0, runtimeErr("%s %s of state %s must name a positive whole number, got %s", what, p.raw, v.s.Name, describe(x, ok))
	}
	return time.Duration(n) * time.Second, nil
}

func (v *visit) task(ctx context.Context, raw, eff any, attempt int, akey string) (any, error) {
	s := v.s
	env := v.env(akey+"/", eff)
	call := TaskCall{State: s.Name, Resource: s.Resource, Input: encodeValue(eff), Attempt: attempt,
		IdempotencyKey: v.r.cobj.ExecutionID + "/" + akey}
	var payload any = eff
	if s.parameters != nil {
		p, err := s.parameters.eval(env, s.field+".Parameters")
		if err != nil {
			return nil, err
		}
		payload = p
		call.Parameters = encodeValue(p)
	}
	var err error
	if call.Timeout, err = v.seconds(s.timeoutPath, s.timeoutSeconds, eff, "TimeoutSecondsPath"); err != nil {
		return nil, err
	}
	if call.Heartbeat, err = v.seconds(s.heartbeatPath, s.heartbeatSeconds, eff, "HeartbeatSecondsPath"); err != nil {
		return nil, err
	}
	byDeadline := false
	if !v.r.deadline.IsZero() {
		v.enteredAt()
		v.mu.Lock()
		left := v.r.deadline.Sub(v.clock)
		v.mu.Unlock()
		if call.Timeout == 0 || left < call.Timeout {
			call.Timeout, byDeadline = left, true
		}
	}
	details := map[string]any{"resource": s.Resource, "parameters": payload, "attempt": attempt}
	if call.Timeout > 0 {
		details["timeoutInSeconds"] = call.Timeout.Seconds()
	}
	v.record("TaskScheduled", details)
	res, err := v.r.rt.Task(ctx, akey, call)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var result any
	if err == nil {
		if len(strings.TrimSpace(string(res))) == 0 {
			res = json.RawMessage("null")
		}
		if result, err = decodeValue(res); err != nil {
			err = &Error{Name: ErrTaskFailed, Cause: "the task returned invalid JSON: " + err.Error()}
		}
	}
	if err != nil {
		var se *Error
		switch {
		case errors.As(err, &se):
		case errors.Is(err, context.DeadlineExceeded):
			se = &Error{Name: ErrTimeout, Cause: err.Error()}
		default:
			se = &Error{Name: ErrTaskFailed, Cause: err.Error()}
		}
		if se.Name == ErrTimeout || se.Name == ErrHeartbeatTimeout {
			v.record("TaskTimedOut", map[string]any{"resource": s.Resource, "error": se.Name, "cause": se.Cause})
			if byDeadline && se.Name == ErrTimeout {
				return nil, &execTimeout{}
			}
		} else {
			v.record("TaskFailed", map[string]any{"resource": s.Resource, "error": se.Name, "cause": se.Cause})
		}
		return nil, se
	}
	v.record("TaskSucceeded", map[string]any{"resource": s.Resource, "output": result})
	return v.finish(env, raw, result)
}

func (v *visit) parallel(ctx context.Context, raw, eff any, akey string) (any, error) {
	s := v.s
	env := v.env(akey+"/", eff)
	in := eff
	if s.parameters != nil {
		var err error
		if in, err = s.parameters.eval(env, s.field+".Parameters"); err != nil {
			return nil, err
		}
	}
	v.record("ParallelStateStarted", map[string]any{"branches": len(s.Branches)})
	results, err := v.r.fanOut(ctx, len(s.Branches), 0, v.sc.rec, func(ctx context.Context, i int, rec func(Event)) (any, error) {
		sc := &scope{prefix: fmt.Sprintf("%s[%d]/", akey, i), visits: map[string]int{}, rec: rec}
		return v.r.machine(ctx, s.Branches[i], in, sc)
	})
	if err != nil {
		var se *Error
		if errors.As(err, &se) {
			v.record("ParallelStateFailed", map[string]any{"error": se.Name, "cause": se.Cause})
		}
		return nil, err
	}
	v.record("ParallelStateSucceeded", map[string]any{"output": results})
	return v.finish(env, raw, results)
}

func (v *visit) mapState(ctx context.Context, raw, eff any, akey string) (any, error) {
	s := v.s
	env := v.env(akey+"/", eff)
	itemsAny := eff
	if s.itemsPath != nil {
		var ok bool
		if itemsAny, ok = v.lookup(s.itemsPath, eff); !ok {
			return nil, runtimeErr("ItemsPath %s of state %s matched nothing in the input", s.itemsPath.raw, s.Name)
		}
	}
	items, ok := itemsAny.([]any)
	if !ok {
		return nil, runtimeErr("the items of Map state %s must be an array, not %s", s.Name, typeName(itemsAny))
	}
	limit := s.maxConcurrency
	if s.maxConcurrencyPath != nil {
		x, ok := v.lookup(s.maxConcurrencyPath, eff)
		n, isInt := toInt(x)
		if !ok || !isInt || n < 0 {
			return nil, runtimeErr("MaxConcurrencyPath %s of state %s must name a non-negative whole number, got %s", s.maxConcurrencyPath.raw, s.Name, describe(x, ok))
		}
		limit = n
	}
	v.record("MapStateStarted", map[string]any{"length": len(items)})
	results, err := v.r.fanOut(ctx, len(items), limit, v.sc.rec, func(ctx context.Context, i int, rec func(Event)) (any, error) {
		prefix := fmt.Sprintf("%s[%d]/", akey, i)
		rec(Event{Type: "MapIterationStarted", StateName: s.Name, Key: v.key, Details: encodeValue(map[string]any{"name": s.Name, "index": i})})
		in := items[i]
		var err error
		if s.itemSelector != nil {
			ienv := &evalEnv{v: v, base: prefix + "ItemSelector/", input: eff,
				mapItem: map[string]any{"Index": intValue(i), "Value": items[i]}}
			in, err = s.itemSelector.eval(ienv, s.field+".ItemSelector")
		}
		var out any
		if err == nil {
			out, err = v.r.machine(ctx, s.ItemProcessor, in, &scope{prefix: prefix, visits: map[string]int{}, rec: rec})
		}
		var se *Error
		switch {
		case err == nil:
			rec(Event{Type: "MapIterationSucceeded", StateName: s.Name, Key: v.key, Details: encodeValue(map[string]any{"name": s.Name, "index": i})})
		case errors.As(err, &se):
			rec(Event{Type: "MapIterationFailed", StateName: s.Name, Key: v.key, Details: encodeValue(map[string]any{"name": s.Name, "index": i, "error": se.Name, "cause": se.Cause})})
		}
		return out, err
	})
	if err != nil {
		var se *Error
		if errors.As(err, &se) {
			v.record("MapStateFailed", map[string]any{"error": se.Name, "cause": se.Cause})
		}
		return nil, err
	}
	v.record("MapStateSucceeded", map[string]any{"length": len(items)})
	return v.finish(env, raw, results)
}

// fanOut runs n branches or iterations, at most limit (0: all) at a time,
// and returns their results in index order. Each one's events are buffered
// and passed to rec in index order, iteration i once 0…i have all finished,
// so that the history does not depend on scheduling. The first failure by
// index wins: it cancels every higher index, and lower ones run to the end
// because one of them may fail too and then be the failure to report.
func (r *runner) fanOut(ctx context.Context, n, limit int, rec func(Event), run func(ctx context.Context, i int, rec func(Event)) (any, error)) ([]any, error) {
	if limit <= 0 || limit > n {
		limit = n
	}
	results := make([]any, n)
	errs := make([]error, n)
	bufs := make([][]Event, n)
	done := make([]bool, n)
	cancels := make([]context.CancelFunc, n)
	var (
		mu      sync.Mutex
		minFail = n
		abort   error
		flushed int
		stopped bool
		wg      sync.WaitGroup
	)
	cancelAbove := func(i int) {
		for j := i + 1; j < n; j++ {
			if cancels[j] != nil {
				cancels[j]()
			}
		}
	}
	sem := make(chan struct{}, max(limit, 1))
launch:
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break launch
		}
		mu.Lock()
		if i > minFail || abort != nil {
			mu.Unlock()
			break
		}
		ictx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var bmu sync.Mutex
			var buf []Event
			res, err := run(ictx, i, func(e Event) {
				bmu.Lock()
				buf = append(buf, e)
				bmu.Unlock()
			})
			mu.Lock()
			defer mu.Unlock()
			results[i], errs[i], done[i] = res, err, true
			bmu.Lock()
			bufs[i] = buf
			bmu.Unlock()
			if err != nil && i < minFail {
				var se *Error
				if errors.As(err, &se) {
					minFail = i
					cancelAbove(i)
				} else if abort == nil {
					abort = err
					cancelAbove(-1)
				}
			}
			for abort == nil && !stopped && flushed < n && done[flushed] {
				for _, e := range bufs[flushed] {
					rec(e)
				}
				bufs[flushed] = nil
				stopped = errs[flushed] != nil
				flushed++
			}
		}()
	}
	wg.Wait()
	for _, c := range cancels {
		if c != nil {
			c()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if abort != nil {
		return nil, abort
	}
	if minFail < n {
		return nil, errs[minFail]
	}
	return results, nil
}
