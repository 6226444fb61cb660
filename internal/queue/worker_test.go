package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

func TestDecide(t *testing.T) {
	f := Function{Environment: "dev", Name: "resize", Timeout: 30 * time.Second, MaxRetries: 3, Backoff: time.Second}
	withDLT := f
	withDLT.DeadLetterTopic = "failed"
	noRetries := f
	noRetries.MaxRetries = 0
	refused := errors.New("connection refused")

	for _, c := range []struct {
		name     string
		f        Function
		attempts int
		source   string
		res      result
		want     verdict
	}{
		{"2xx succeeds", f, 1, "async", result{status: 204},
			verdict{status: v1.InvocationSucceeded, statusCode: 204}},
		{"an answer that came back while closing still succeeds", f, 1, "async", result{status: 200, closing: true},
			verdict{status: v1.InvocationSucceeded, statusCode: 200}},
		{"a failure cut short by closing does not count", f, 4, "async", result{err: context.Canceled, closing: true},
			verdict{status: v1.InvocationPending, uncounted: true}},
		{"HTTP 500 is retried after the backoff", f, 1, "async", result{status: 500},
			verdict{status: v1.InvocationPending, retryIn: time.Second, statusCode: 500, errMsg: "function answered HTTP 500"}},
		{"3xx is a failure too", f, 1, "async", result{status: 302},
			verdict{status: v1.InvocationPending, retryIn: time.Second, statusCode: 302, errMsg: "function answered HTTP 302"}},
		{"a status with a transport error is not a success", f, 1, "async", result{status: 200, err: refused},
			verdict{status: v1.InvocationPending, retryIn: time.Second, errMsg: "connection refused"}},
		{"the backoff doubles", f, 3, "async", result{err: refused},
			verdict{status: v1.InvocationPending, retryIn: 4 * time.Second, errMsg: "connection refused"}},
		{"the backoff stops at an hour", Function{MaxRetries: 100, Backoff: time.Minute}, 30, "async", result{status: 503},
			verdict{status: v1.InvocationPending, retryIn: time.Hour, statusCode: 503, errMsg: "function answered HTTP 503"}},
		{"a timeout says so", f, 1, "async", result{err: context.DeadlineExceeded, timedOut: true},
			verdict{status: v1.InvocationPending, retryIn: time.Second, errMsg: "timed out after 30s: context deadline exceeded"}},
		{"the last retry fails for good", f, 4, "async", result{status: 500},
			verdict{status: v1.InvocationFailed, statusCode: 500, errMsg: "function answered HTTP 500"}},
		{"no retries: the first failure is final", noRetries, 1, "async", result{err: refused},
			verdict{status: v1.InvocationFailed, errMsg: "connection refused"}},
		{"a final failure goes to the dead-letter topic", withDLT, 4, "topic:orders", result{status: 500},
			verdict{status: v1.InvocationFailed, statusCode: 500, errMsg: "function answered HTTP 500", deadLetter: "failed"}},
		{"a dead letter is not sent back to its own topic", withDLT, 4, "topic:failed", result{status: 500},
			verdict{status: v1.InvocationFailed, statusCode: 500, errMsg: "function answered HTTP 500", ownDeadLetter: true}},
		{"a retry does not dead-letter yet", withDLT, 2, "async", result{status: 500},
			verdict{status: v1.InvocationPending, retryIn: 2 * time.Second, statusCode: 500, errMsg: "function answered HTTP 500"}},
	} {
		if got := decide(c.f, c.attempts, c.source, c.res); got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}
