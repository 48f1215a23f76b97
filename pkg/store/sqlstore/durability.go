package sqlstore

import (
	"context"
	"fmt"
)

// Durability says what a restart or a primary failover of the PostgreSQL
// server can cost, as read at start (OpenURL); ok is false when a claim
// or record can be lost, and with it the promise that its key never runs
// twice. SQLite: the empty string and true (one file on this machine).
func (s *Store) Durability() (summary string, ok bool) { return s.durability, s.durable }

// checkDurability reads the settings that decide whether a commit (a
// claim, before its request runs) survives: synchronous_commit,
// synchronous_standby_names, fsync and the standbys streaming from this
// server. A server that denies them is taken at its worst.
func (s *Store) checkDurability(ctx context.Context, dialect Dialect) {
	s.durability, s.durable = "", true
	if dialect != Postgres {
		return
	}
	var commit, standbyNames, fsync string
	var standbys int
	err := s.db.QueryRowContext(ctx, `SELECT current_setting('synchronous_commit'), current_setting('synchronous_standby_names'),
		current_setting('fsync'), (SELECT count(*) FROM pg_stat_replication)`).Scan(&commit, &standbyNames, &fsync, &standbys)
	switch {
	case err != nil:
		s.durability, s.durable = "settings unreadable ("+err.Error()+"): durability not checked", false
	case fsync != "on" || commit == "off":
		s.durability, s.durable = fmt.Sprintf("fsync=%s, synchronous_commit=%s: a crash of the server can lose the last commits, and those keys may run again", fsync, commit), false
	case standbyNames != "" && commit != "local":
		s.durability = fmt.Sprintf("synchronous_standby_names=%q, synchronous_commit=%s: every claim is on a synchronous standby before its request runs, so a failover to it keeps claims and records", standbyNames, commit)
	case standbys > 0:
		s.durability, s.durable = fmt.Sprintf("%d asynchronous standbys: a failover can lose the claims and records of the last moments, and those keys may run again; set synchronous_standby_names and synchronous_commit=on", standbys), false
	default:
		s.durability = "no standby; fsync on: a restart keeps every claim and record (losing the server loses them)"
	}
}
