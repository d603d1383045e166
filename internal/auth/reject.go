package auth

import (
	"errors"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/wedsync/pulse/internal/safeerr"
)

// DefaultRejectLogEvery is how often LogRejections writes a line per reason.
const DefaultRejectLogEvery = time.Minute

// LogRejections returns an Authenticator that asks a and logs the
// credentials it refuses, so that a wave of bad or expired tokens shows in
// the log. The line names the reason (a's error text: a fixed phrase such
// as "token is expired", never the token; a reason that would quote the
// token is logged as "invalid credential") and the credential's shape
// ("jwt" or "opaque"), never the credential. Lines are rate-limited per
// reason with safeerr.Limiter: at most one every period (default
// DefaultRejectLogEvery when period is 0), each giving the number held back
// since the last, so a burst of rejections costs a line, not a storm. It is
// safe for concurrent use when a is.
func LogRejections(a Authenticator, log zerolog.Logger, period time.Duration) Authenticator {
	if period <= 0 {
		period = DefaultRejectLogEvery
	}
	return &rejectLog{a: a, log: log.With().Str("component", "auth").Logger(), limit: safeerr.NewLimiter(period), period: period, now: time.Now}
}

type rejectLog struct {
	a      Authenticator
	log    zerolog.Logger
	limit  *safeerr.Limiter
	period time.Duration
	now    func() time.Time // the limiter's clock
}

func (r *rejectLog) Authenticate(token string) (Principal, error) {
	p, err := r.a.Authenticate(token)
	if err == nil {
		return p, nil
	}
	reason := strings.TrimSuffix(strings.TrimPrefix(err.Error(), "jwt: "), ": "+ErrUnauthenticated.Error())
	if !errors.Is(err, ErrUnauthenticated) || token != "" && strings.Contains(reason, token) {
		reason = "invalid credential"
	}
	shape := "opaque"
	if LooksLikeJWT(token) {
		shape = "jwt"
	}
	if ok, suppressed := r.limit.Allow(reason, r.now()); ok {
		r.log.Warn().Str("reason", reason).Str("shape", shape).Int("suppressed", suppressed).Dur("every", r.period).
			Msg("credential rejected (one line per reason per period; suppressed counts those held back since the last)")
	}
	return p, err
}
