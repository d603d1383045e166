package validate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The auth/schema validation (the spec's validateAuthConfiguration) looks
// at how the app's database holds its users: whether the user ids the
// fleet sends Pulse are pseudonymous, and whether a user can be deleted.
//
// # Pseudonymous user ids
//
// Pulse stores each request's user_id (a UUID, as the spec's metrics
// schema demands) for the raw retention. Such an id is pseudonymous in the
// sense of GDPR Art. 4(5) when it cannot be tied to a person without
// information kept apart: the app's database, which Pulse's store does not
// hold. That is true of a surrogate key that carries nothing about the
// person: a column of type uuid that is not computed from the row
// (generated) and is either assigned elsewhere (no default: Supabase Auth
// assigns random version 4 UUIDs to auth.users.id) or defaults to a random
// generator (gen_random_uuid(), uuid_generate_v4(), uuidv4(), uuidv7()).
// Anything else fails: a text or numeric id may be an email, a username or
// a counter shown in URLs, a generated column is computed from the row, and
// a name-based UUID (uuid_generate_v3/v5, md5(...)::uuid) can be recomputed
// by anyone who knows the name it was made of. A column that is a foreign
// key (user_profiles.id referencing auth.users.id) is judged with the
// column it references, up to three hops, since its values come from
// there. Config.UserIDColumns names the columns (default user_profiles.id);
// Config.UserIDsPseudonymised declares that the fleet hashes ids with a key
// of its own instead, and then the columns are not looked at.

// randomUUIDDefault matches the column defaults that draw random UUIDs.
var randomUUIDDefault = regexp.MustCompile(`^(?:(?:[a-z_][a-z0-9_]*|"[^"]+")\.)?(?:gen_random_uuid|uuid_generate_v4|uuidv4|uuidv7)\(\)$`)

// maxKeyHops is how many foreign keys checkUserIDColumns follows from a
// configured column.
const maxKeyHops = 3

// userIDColumn is what the catalogue says of one column.
type userIDColumn struct {
	schema, table, column string
	typ                   string // format_type
	isUUID, generated     bool
	def                   string // the default's expression, "" for none
	ref                   [3]string
}

func (c userIDColumn) name() string { return c.schema + "." + c.table + "." + c.column }

// lookupColumn finds table.column in the first of schemas that has it.
func lookupColumn(ctx context.Context, tx pgx.Tx, schemas []string, table, column string) (userIDColumn, bool, error) {
	var c userIDColumn
	err := tx.QueryRow(ctx, marker+`SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
			a.atttypid = 'uuid'::regtype, a.attgenerated <> '', coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
			coalesce(ref.rs, ''), coalesce(ref.rt, ''), coalesce(ref.ra, '')
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		LEFT JOIN LATERAL (
			SELECT rn.nspname::text AS rs, rc.relname::text AS rt, ra.attname::text AS ra
			FROM pg_constraint con
			JOIN pg_class rc ON rc.oid = con.confrelid
			JOIN pg_namespace rn ON rn.oid = rc.relnamespace
			JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = con.confkey[1]
			WHERE con.contype = 'f' AND con.conrelid = c.oid AND con.conkey = ARRAY[a.attnum]
			ORDER BY con.conname LIMIT 1) ref ON true
		WHERE n.nspname::text = ANY($1::text[]) AND c.relname::text = $2 AND a.attname::text = $3
		  AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		ORDER BY array_position($1::text[], n.nspname::text) LIMIT 1`, schemas, table, column).
		Scan(&c.schema, &c.table, &c.column, &c.typ, &c.isUUID, &c.generated, &c.def, &c.ref[0], &c.ref[1], &c.ref[2])
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	return c, err == nil, err
}

// notPseudonymous says why column c does not hold pseudonymous ids ("" when
// it does).
func (c userIDColumn) notPseudonymous() string {
	switch {
	case !c.isUUID:
		return fmt.Sprintf("is of type %s, not uuid: such an id may be an email, a username or a counter shown in URLs, and says who or how early someone is", c.typ)
	case c.generated:
		return "is a generated column, computed from other columns of the row"
	case c.def != "" && !randomUUIDDefault.MatchString(c.def):
		return fmt.Sprintf("defaults to %s, which is not a random UUID: a name-based UUID or a hash can be recomputed from what it was made of (an email, a username)", oneLine(c.def, 120))
	}
	return ""
}

// splitColumn splits "table.column" or "schema.table.column" into the
// schemas to look in, the table and the column.
func (v *Validator) splitColumn(spec string) (schemas []string, table, column string) {
	parts := strings.Split(spec, ".")
	if len(parts) == 3 {
		return parts[:1], parts[1], parts[2]
	}
	return v.cfg.ExposedSchemas, parts[0], parts[len(parts)-1]
}

func checkUserIDColumns(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	cfg := s.v.cfg
	if cfg.UserIDsPseudonymised {
		s.f.skip("user_id_not_pseudonymous", "the fleet sends keyed hashes of the user ids (UserIDsPseudonymised), so the app's id columns do not reach Pulse")
		return nil
	}
	for _, spec := range cfg.UserIDColumns {
		schemas, table, column := s.v.splitColumn(spec)
		c, ok, err := lookupColumn(ctx, tx, schemas, table, column)
		if err != nil {
			return err
		}
		if !ok {
			s.f.add("user_id_column_missing", SeverityCritical, "column "+spec,
				fmt.Sprintf("User id column %s (UserIDColumns) does not exist (looked for in %s), so whether the user ids Pulse stores are pseudonymous cannot be judged.",
					spec, strings.Join(schemas, ", ")),
				"Name the column whose values the fleet sends as user_id in --validate-user-id-columns (PULSE_VALIDATE_USER_ID_COLUMNS), e.g. user_profiles.id or auth.users.id.")
			continue
		}
		chain := []string{c.name()}
		why := c.notPseudonymous()
		for hop := 0; why == "" && c.ref[0] != "" && hop < maxKeyHops; hop++ {
			next, found, err := lookupColumn(ctx, tx, c.ref[:1], c.ref[1], c.ref[2])
			if err != nil {
				return err
			}
			if !found || slices.Contains(chain, next.name()) {
				break
			}
			chain = append(chain, next.name())
			c, why = next, next.notPseudonymous()
		}
		if why == "" {
			continue
		}
		from := ""
		if len(chain) > 1 {
			from = fmt.Sprintf(" (its values come from %s through foreign keys)", strings.Join(chain[1:], " -> "))
		}
		s.f.add("user_id_not_pseudonymous", SeverityCritical, "column "+chain[0],
			fmt.Sprintf("The fleet sends %s as user_id%s, and %s %s: the user ids Pulse stores identify people, so its request rows are personal data in the clear.",
				chain[0], from, c.name(), why),
			"Key users by a random UUID (uuid PRIMARY KEY DEFAULT gen_random_uuid(), or the Supabase Auth user's id), or have the fleet send an HMAC-SHA256 of the id formatted as a UUID and set --validate-user-ids-pseudonymised.")
	}
	return nil
}

func checkAuthUserDeletes(ctx context.Context, tx pgx.Tx, s *dbSession) error {
	const lint = "auth_user_delete_blocked"
	ok, err := s.requireSchema(ctx, tx, lint, "auth", "Supabase Auth")
	if !ok || err != nil {
		return err
	}
	if ok, err = exists(ctx, tx, "to_regclass('auth.users')"); err != nil || !ok {
		if err == nil {
			s.f.skip(lint, "the database has no auth.users table (Supabase Auth), so the lint does not apply")
		}
		return err
	}
	var sch, name, fk string
	return s.query(ctx, tx, `SELECT n.nspname::text, c.relname::text, con.conname::text
		FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE con.contype = 'f' AND con.confrelid = 'auth.users'::regclass AND con.confdeltype IN ('a', 'r') AND `+appSchema+`
		ORDER BY 1, 2, 3`, func() error {
		s.f.add(lint, SeverityWarning, qualified(sch, name)+"."+fk,
			fmt.Sprintf("Foreign key %s on %s references auth.users without ON DELETE CASCADE or SET NULL: deleting a user in Supabase Auth (an erasure request, or a user closing the account) fails while %s holds their rows.",
				fk, qualified(sch, name), qualified(sch, name)),
			fmt.Sprintf("Recreate %s on %s with ON DELETE CASCADE (or ON DELETE SET NULL for rows that must stay, such as invoices).", pgIdent(fk), pgIdent(sch, name)))
		return nil
	}, &sch, &name, &fk)
}
