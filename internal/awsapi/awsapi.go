package awsapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/sigv4"
	"berth.dev/berth/internal/store"
)

// Identity is whom a verified access key acts as.
type Identity interface {
	// CanAccess says whether the key may read (write false) or change
	// what runs in env: nil, or an error saying why not.
	CanAccess(env string, write bool) error
}

// KeyLookup finds the secret of an access key and whom it acts as; an
// unknown (or revoked) key is sigv4.ErrUnknownKey.
type KeyLookup func(ctx context.Context, accessKeyID string) (secret string, who Identity, err error)

// Config is what the composition root gives the APIs.
type Config struct {
	// Store is read for the Workflows, Functions and Environments listed.
	Store store.Store
	Keys  KeyLookup
	// Executions runs workflow executions (the workflow engine).
	Executions Executions
	// Invocations runs function invocations (the gateway and the queue).
	Invocations Invocations
	// MaxPayloadBytes bounds inputs and invocation payloads (default
	// 1 MiB, the engine's task result bound).
	MaxPayloadBytes int64
	Logger          *slog.Logger
	Now             func() time.Time
}

// API serves both APIs; StepFunctions and Lambda are their handlers.
type API struct {
	cfg    Config
	log    *slog.Logger
	states *sigv4.Verifier
	lambda *sigv4.Verifier
}

// New builds the APIs.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxPayloadBytes <= 0 {
		cfg.MaxPayloadBytes = 1 << 20
	}
	a := &API{cfg: cfg, log: cfg.Logger}
	a.states = &sigv4.Verifier{Service: "states", Now: cfg.Now, Lookup: a.lookupSecret, DoubleEscapePath: true}
	a.lambda = &sigv4.Verifier{Service: "lambda", Now: cfg.Now, Lookup: a.lookupSecret, DoubleEscapePath: true}
	return a
}

type identityKey struct{}

// lookupSecret is the verifiers' lookup; the identity rides along in a
// holder put in the context by authenticate.
func (a *API) lookupSecret(ctx context.Context, id string) (string, error) {
	if a.cfg.Keys == nil {
		return "", sigv4.ErrUnknownKey
	}
	secret, who, err := a.cfg.Keys(ctx, id)
	if err != nil {
		return "", err
	}
	if h, ok := ctx.Value(identityKey{}).(*Identity); ok {
		*h = who
	}
	return secret, nil
}

// caller is a verified request: whom it acts as, the region it was signed
// for (ARNs answered carry it), and its body, read whole.
type caller struct {
	who    Identity
	region string
	body   []byte
}

// authenticate verifies r's signature for v and reads its body (bounded).
func (a *API) authenticate(r *http.Request, v *sigv4.Verifier, limit int64) (*caller, error) {
	var who Identity
	ctx := context.WithValue(r.Context(), identityKey{}, &who)
	res, err := v.Verify(r.WithContext(ctx))
	if err != nil {
		return nil, authError(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, authError(err)
	}
	if int64(len(b)) > limit {
		return nil, &apiError{Code: "RequestEntityTooLargeException", Status: http.StatusRequestEntityTooLarge,
			Message: fmt.Sprintf("the request body is over the limit of %d bytes", limit)}
	}
	if who == nil {
		return nil, &apiError{Code: "UnrecognizedClientException", Status: http.StatusForbidden, Message: "The security token included in the request is invalid."}
	}
	return &caller{who: who, region: res.Credential.Region, body: b}, nil
}

// apiError is an error answered with an AWS error code.
type apiError struct {
	Code    string
	Message string
	Status  int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

// authError maps a signature failure onto the codes AWS's JSON services
// answer (the S3 codes sigv4 names are S3's dialect).
func authError(err error) error {
	var se *sigv4.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case "InvalidAccessKeyId":
		return errf(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.")
	case "SignatureDoesNotMatch":
		return errf(http.StatusForbidden, "InvalidSignatureException", "%s", se.Message)
	case "RequestTimeTooSkewed":
		return errf(http.StatusForbidden, "InvalidSignatureException", "Signature expired: %s", se.Message)
	case "AccessDenied":
		if err == sigv4.ErrNoSignature {
			return errf(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
		}
		return errf(http.StatusForbidden, "AccessDeniedException", "%s", se.Message)
	case "AuthorizationHeaderMalformed", "InvalidArgument", "InvalidRequest", "MissingContentLength":
		return errf(http.StatusBadRequest, "IncompleteSignatureException", "%s", se.Message)
	}
	return errf(se.Status, se.Code, "%s", se.Message)
}

// accessError is how a refused Identity check is answered.
func accessError(err error) error {
	return errf(http.StatusBadRequest, "AccessDeniedException", "%v", err)
}

// internalError hides an unexpected error behind the code the SDKs retry.
func (a *API) internalError(op string, err error) *apiError {
	a.log.Error("aws api request failed", "op", op, "err", err)
	return errf(http.StatusInternalServerError, "ServiceException", "internal error; the server log has the details")
}

func requestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// epoch is a timestamp as the JSON protocols write it: seconds since the
// epoch, fractional.
type epoch time.Time

func (t epoch) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	return []byte(strconv.FormatFloat(float64(tt.UnixMilli())/1000, 'f', -1, 64)), nil
}

func epochPtr(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(t)
	return &e
}

// jsonString is JSON text as the Step Functions API carries it: a string.
func jsonString(raw json.RawMessage) *string {
	if len(raw) == 0 {
		return nil
	}
	s := string(raw)
	return &s
}

// page cuts items by a nextToken (an offset) and maxResults.
func page[T any](items []T, token string, max, limit int) ([]T, string, error) {
	off := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", errf(http.StatusBadRequest, "InvalidToken", "nextToken %q is not one this API gave", token)
		}
		off = n
	}
	if max <= 0 || max > limit {
		max = limit
	}
	end := min(off+max, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[off:end], next, nil
}

// environments lists the environments who may read, sorted.
func (a *API) environments(ctx context.Context, who Identity) ([]string, error) {
	envs, _, err := store.List[v1.Environment](ctx, a.cfg.Store, v1.KindEnvironment, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range envs {
		if who.CanAccess(e.Metadata.Name, false) == nil {
			out = append(out, e.Metadata.Name)
		}
	}
	return out, nil
}

// isName says whether s can be an execution name: what Step Functions
// accepts, minus the characters Berth's ids never hold.
func isName(s string) bool {
	if s == "" || len(s) > 80 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func trimPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// Route sends Step Functions requests (recognised by their X-Amz-Target)
// and Lambda requests (under /2015-03-31/) to a, and the rest to next:
// both APIs live on Berth's API listener beside its own API.
func Route(a *API, next http.Handler) http.Handler {
	sfn, lambda := a.StepFunctions(), a.Lambda()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := trimPrefixFold(r.Header.Get("X-Amz-Target"), StepFunctionsTargetPrefix); ok {
			sfn.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, LambdaPathPrefix) {
			lambda.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
