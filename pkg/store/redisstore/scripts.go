package redisstore

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lua/acquire.lua
	acquireSrc string
	//go:embed lua/complete.lua
	completeSrc string
	//go:embed lua/release.lua
	releaseSrc string
	//go:embed lua/extend.lua
	extendSrc string
	//go:embed lua/get.lua
	getSrc string
	//go:embed lua/delete.lua
	deleteSrc string
)

// The scripts hold only their source and SHA-1; sharing them between
// stores is safe.
var (
	acquireScript  = redis.NewScript(acquireSrc)
	completeScript = redis.NewScript(completeSrc)
	releaseScript  = redis.NewScript(releaseSrc)
	extendScript   = redis.NewScript(extendSrc)
	getScript      = redis.NewScript(getSrc)
	deleteScript   = redis.NewScript(deleteSrc)

	allScripts = []*redis.Script{acquireScript, completeScript, releaseScript, extendScript, getScript, deleteScript}
)

// Reply codes of the acquire script.
const (
	replyAcquired     = 1
	replyCompleted    = 2
	replyInFlight     = 3
	replyMismatch     = 4
	replyRefused      = 5
	replyLeaseExpired = 6
)

// replyRecreated is the extend script's answer for a claim it re-created.
const replyRecreated = 2
