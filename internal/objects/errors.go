package objects

import (
	"fmt"

	v1 "berth.dev/berth/api/v1"
)

// Error is a refusal with the S3 error code that names it; Unwrap gives
// the v1 kind, so the API server answers it like any other error.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap lets v1.KindOf see the kind of the code.
func (e *Error) Unwrap() error { return &v1.Error{Kind: kindOf(e.Code), Message: e.Message} }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Codes, as S3 names them.
const (
	CodeNoSuchBucket          = "NoSuchBucket"
	CodeNoSuchKey             = "NoSuchKey"
	CodeNoSuchUpload          = "NoSuchUpload"
	CodeBucketExists          = "BucketAlreadyOwnedByYou"
	CodeBucketNotEmpty        = "BucketNotEmpty"
	CodeInvalidBucketName     = "InvalidBucketName"
	CodeKeyTooLong            = "KeyTooLongError"
	CodeInvalidArgument       = "InvalidArgument"
	CodePreconditionFailed    = "PreconditionFailed"
	CodeBadDigest             = "BadDigest"
	CodeInvalidDigest         = "InvalidDigest"
	CodeQuotaExceeded         = "QuotaExceeded"
	CodeEntityTooLarge        = "EntityTooLarge"
	CodeEntityTooSmall        = "EntityTooSmall"
	CodeInvalidPart           = "InvalidPart"
	CodeInvalidPartOrder      = "InvalidPartOrder"
	CodeIncompleteBody        = "IncompleteBody"
	CodeTooManyBuckets        = "TooManyBuckets"
	CodeConditionalConflict   = "ConditionalRequestConflict"
	CodeInvalidRequest        = "InvalidRequest"
	CodeMalformedXML          = "MalformedXML"
	CodeNotModified           = "NotModified"
	CodeInvalidRange          = "InvalidRange"
	CodeInternalError         = "InternalError"
	CodeMethodNotAllowed      = "MethodNotAllowed"
	CodeAccessDenied          = "AccessDenied"
	CodeNotImplemented        = "NotImplemented"
	CodeMissingContentLength  = "MissingContentLength"
	CodeInvalidStorageClass   = "InvalidStorageClass"
	CodeSlowDown              = "SlowDown"
	CodeServiceUnavailable    = "ServiceUnavailable"
	CodeInvalidObjectState    = "InvalidObjectState"
	CodeXAmzContentSHA256Mism = "XAmzContentSHA256Mismatch"
)

func kindOf(code string) string {
	switch code {
	case CodeNoSuchBucket, CodeNoSuchKey, CodeNoSuchUpload:
		return v1.ErrNotFound
	case CodeBucketExists, CodeBucketNotEmpty, CodeConditionalConflict, CodePreconditionFailed:
		return v1.ErrConflict
	case CodeEntityTooLarge:
		return v1.ErrTooLarge
	case CodeAccessDenied:
		return v1.ErrForbidden
	case CodeInternalError:
		return v1.ErrInternal
	case CodeSlowDown, CodeServiceUnavailable:
		return v1.ErrUnavailable
	}
	return v1.ErrInvalid
}

// CodeOf is the S3 code of err, "" when it is not an *Error.
func CodeOf(err error) string {
	for err != nil {
		if e, ok := err.(*Error); ok {
			return e.Code
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return ""
		}
		err = u.Unwrap()
	}
	return ""
}

// Errorf makes an *Error of code, for the API layers in front.
func Errorf(code, format string, args ...any) *Error { return errorf(code, format, args...) }
