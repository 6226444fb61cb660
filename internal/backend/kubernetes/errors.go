package kubernetes

import (
	"errors"
	"net"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	v1 "berth.dev/berth/api/v1"
)

// wrap says plainly what went wrong on the cluster, in Berth's error
// kinds: an unreachable cluster is Unavailable, RBAC refusing a verb on a
// resource is Forbidden (naming both), a quota refusing an object is
// Forbidden with the quota's words, an object changed underneath is a
// Conflict (retried by the controllers).
func (b *Backend) wrap(err error, verb, resource, ns string) error {
	if err == nil {
		return nil
	}
	where := ""
	if ns != "" {
		where = " in namespace " + ns
	}
	var uerr *url.Error
	var nerr net.Error
	switch {
	case apierrors.IsForbidden(err):
		return v1.Errorf(v1.ErrForbidden, "kubernetes: %s %s%s was refused: %v (check Berth's RBAC: it needs %q on %s)", verb, resource, where, apiMessage(err), verb, resource)
	case apierrors.IsUnauthorized(err):
		return v1.Errorf(v1.ErrForbidden, "kubernetes: the cluster at %s does not accept Berth's credentials: %v", b.host, apiMessage(err))
	case apierrors.IsNotFound(err):
		return v1.NotFound("kubernetes: %s%s: %v", resource, where, apiMessage(err))
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return v1.Conflict("kubernetes: %s %s%s: %v", verb, resource, where, apiMessage(err))
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return v1.Invalid("kubernetes: %s %s%s: %v", verb, resource, where, apiMessage(err))
	case errors.As(err, &uerr), errors.As(err, &nerr):
		return v1.Unavailable("kubernetes: the cluster at %s is unreachable: %v", b.host, err)
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsServiceUnavailable(err), apierrors.IsTooManyRequests(err):
		return v1.Unavailable("kubernetes: %s %s%s: %v", verb, resource, where, apiMessage(err))
	}
	return v1.Unavailable("kubernetes: %s %s%s: %v", verb, resource, where, err)
}

func apiMessage(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Message != "" {
		return st.Status().Message
	}
	return err.Error()
}
