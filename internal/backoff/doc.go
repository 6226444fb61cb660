// Package backoff spaces out retries: a base delay doubled after each try
// up to a bound, optionally jittered, and a wait for it that ends early
// when the caller's context does.
//
// It owns only the arithmetic and the timer. It must not decide what is
// worth retrying, log, or start goroutines: the caller keeps its loop and
// says when a success (or a long enough run) resets the count.
package backoff
