package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	v1 "berth.dev/berth/api/v1"
)

// DefaultMaxPayloadBytes bounds invocation and publish bodies: what a
// queue message or a function's request reasonably carries. Larger data
// goes by reference (an object-store key).
const DefaultMaxPayloadBytes = 1 << 20

// CallbackHeader carries the URL an asynchronous invocation's result is
// POSTed to.
const CallbackHeader = "X-Callback-Url"

// OriginHeader marks an invoke answer that is the function's own (value
// "function"), so a client can tell a function's 404 or 503 from the API's
// errors, which carry the same codes.
const OriginHeader = "X-Berth-Origin"

// Invocations runs functions and publishes to topics for the API. The
// server's composition root provides it (gateway, activator and queue);
// the API server only checks the request and answers.
type Invocations interface {
	// Invoke calls the function synchronously (through the gateway, waking it from zero).
	Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (status int, respHeader http.Header, respBody []byte, err error)
	// Enqueue accepts an asynchronous invocation and returns its id at once.
	Enqueue(ctx context.Context, env, fn string, body []byte, header http.Header, callbackURL string) (id string, err error)
	Get(ctx context.Context, env, id string) (v1.Invocation, error)
	Publish(ctx context.Context, env, topic string, body []byte, header http.Header) (id string, err error)
}

// Accepted is the body of a 202 answer to an asynchronous invocation or a
// publish.
type Accepted struct {
	ID string `json:"id"`
}

// invoke answers POST .../functions/NAME/invoke with the function's own
// answer: its status code, Content-Type and body.
func (s *Server) invoke(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	env, name := r.PathValue("env"), r.PathValue("name")
	body, err := s.invocationRequest(ctx, w, r, v1.KindFunction, env, name)
	if err != nil {
		return err
	}
	status, header, resp, err := s.invocations.Invoke(ctx, env, name, body, forwardHeader(r.Header))
	if err != nil {
		return fmt.Errorf("invoke function %q: %w", name, err)
	}
	if status < 100 || status > 999 {
		return fmt.Errorf("invoke function %q: the invoker answered status %d", name, status)
	}
	if ct := header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	// The answer is the function's, served from the API's origin: a
	// browser must not guess it is something else.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set(OriginHeader, "function")
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	w.WriteHeader(status)
	_, _ = w.Write(resp)
	return nil
}

// enqueue answers POST .../functions/NAME/invocations: 202 with the
// invocation's id, and where to ask for its state.
func (s *Server) enqueue(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	env, name := r.PathValue("env"), r.PathValue("name")
	callback := r.Header.Get(CallbackHeader)
	if callback != "" {
		if err := checkCallbackURL(callback); err != nil {
			return err
		}
	}
	body, err := s.invocationRequest(ctx, w, r, v1.KindFunction, env, name)
	if err != nil {
		return err
	}
	id, err := s.invocations.Enqueue(ctx, env, name, body, forwardHeader(r.Header), callback)
	if err != nil {
		return fmt.Errorf("enqueue an invocation of function %q: %w", name, err)
	}
	w.Header().Set("Location", "/api/v1/environments/"+url.PathEscape(env)+"/invocations/"+url.PathEscape(id))
	writeJSON(w, http.StatusAccepted, Accepted{ID: id})
	return nil
}

func (s *Server) getInvocation(w http.ResponseWriter, r *http.Request) error {
	if s.invocations == nil {
		return errNoInvocations
	}
	inv, err := s.invocations.Get(r.Context(), r.PathValue("env"), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, inv)
	return nil
}

// publish answers POST .../topics/NAME/messages: 202 with the message id
// once the queue holds it.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	env, name := r.PathValue("env"), r.PathValue("name")
	body, err := s.invocationRequest(ctx, w, r, v1.KindTopic, env, name)
	if err != nil {
		return err
	}
	id, err := s.invocations.Publish(ctx, env, name, body, forwardHeader(r.Header))
	if err != nil {
		return fmt.Errorf("publish to topic %q: %w", name, err)
	}
	writeJSON(w, http.StatusAccepted, Accepted{ID: id})
	return nil
}

var errNoInvocations = v1.Unavailable("this server does not run function invocations")

// invocationRequest checks that the target (a Function or a Topic) exists
// and that invocations are served, then reads the payload.
func (s *Server) invocationRequest(ctx context.Context, w http.ResponseWriter, r *http.Request, kind, env, name string) ([]byte, error) {
	res, _ := byKind(kind)
	if _, err := s.load(ctx, res, env, name); err != nil {
		return nil, err
	}
	if s.invocations == nil {
		return nil, errNoInvocations
	}
	body, err := s.readBody(w, r, s.maxPayload)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, v1.Errorf(v1.ErrTooLarge, "payload is larger than the limit of %d bytes (%s); pass larger data by reference",
			s.maxPayload, v1.FormatMemory(s.maxPayload))
	}
	return body, err
}

// forwardHeader is what of the caller's header reaches the function. The
// bearer token is the platform's admin credential: a workload must never
// see it. Hop-by-hop and framing headers belong to this connection only.
func forwardHeader(h http.Header) http.Header {
	out := h.Clone()
	for _, k := range []string{"Authorization", "Cookie", CallbackHeader, "Connection", "Keep-Alive", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"} {
		out.Del(k)
	}
	return out
}

func checkCallbackURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return v1.FieldError(CallbackHeader, "%q is not an absolute http or https URL", s)
	}
	return nil
}
