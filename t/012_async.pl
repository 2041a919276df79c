# 012_async.pl -- phi3_fill_async with the background workers
# (shared_preload_libraries = 'phi3', phi3.async_workers = 1).
#
#   - 50 rows inserted in one transaction: inside it nothing is generated
#     and no column is filled; after commit phi3_async_wait sees them all
#     filled, each exactly once (an audit trigger counts the writes), as
#     the table's owner (current_user in the audit trigger), with the text
#     phi3_generate gives for the same prompt; phi3_stats counts them
#   - a partitioned table (the trigger on the parent) is filled per partition
#   - a rolled-back insert queues nothing; one inserted row is filled
#     shortly after its commit (the worker is woken, not polling)
#   - a row whose prompt does not fit fails alone; the rows of its batch
#     are filled
#   - the owner without UPDATE on the table: the worker cannot write it;
#     after phi3.async_max_attempts the item is failed with the error shown
#     in phi3_queue_items and phi3_queue_status; phi3_async_retry by the
#     owner, once the right is back, fills it
#   - with phi3.async_retry_delay, a failed row waits before its next
#     attempt, twice as long each time; phi3_async_retry makes it due now
#   - in a second database whose rows generate slowly (the big model): a
#     value the user sets while the worker generates the row, or before the
#     worker reaches it, is kept; a row deleted before is skipped; a second
#     session sees the worker in phi3_stat_activity
#   - one worker and two busy databases: after phi3.async_time_slice the
#     worker leaves the busy one after its batch for the waiting one, then
#     comes back
#   - DROP TRIGGER while the worker generates a row: its item is gone and
#     the row is not written
#   - kill -9 of the worker mid-generation, and an immediate shutdown: after
#     the restart every row is filled, each written once, attempts 2
#   - pg_terminate_backend ends the worker within a decoder step
#   - DROP EXTENSION: the worker of that database leaves
#   - after phi3.async_idle_timeout an idle worker leaves its database:
#     DROP DATABASE is not blocked; the next commit starts a worker again
#   - a prepared transaction's row: PREPARE TRANSACTION and ROLLBACK
#     PREPARED start no worker; COMMIT PREPARED starts one, which fills it
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use Phi3TAP;

my $tiny = model_path('tiny-a');
my $big = model_path('big');

my $node = new_node('async', "shared_preload_libraries = 'phi3'", "phi3.model = '$tiny'",
	'phi3.max_tokens = 8', 'phi3.async_max_attempts = 3', 'phi3.batch_size = 4',
	'phi3.async_retry_delay = 0', 'restart_after_crash = on', 'max_prepared_transactions = 2');

# Poll a query until it returns the expected value; the last value seen.
sub poll_until
{
	my ($db, $sql, $want, $timeout) = @_;
	my $deadline = Time::HiRes::time() + ($timeout // 60);
	my $got;
	while (Time::HiRes::time() < $deadline)
	{
		$got = $node->safe_psql($db, $sql);
		return $got if $got eq $want;
		Time::HiRes::sleep(0.05);
	}
	return $got;
}

# The pid of the worker serving a database ('' if none).
sub worker_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity a JOIN pg_database d ON d.oid = a.datid "
		  . "WHERE backend_type = 'phi3 async worker' AND d.datname = '$db'");
}

# A table owned by a plain role, filled by phi3_fill_async, with an audit
# of the worker's writes (who wrote which row; the audit table is named
# without its schema: the owner's code runs with the database's
# search_path, while the worker's own statements see only pg_catalog).
sub make_table
{
	my ($db, $table, $owner) = @_;
	$node->safe_psql($db, qq{
		CREATE TABLE ${table}_writes (id int, by_user name);
		CREATE TABLE $table (id int PRIMARY KEY, name text, description text);
		CREATE FUNCTION ${table}_audit() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN
			IF OLD.description IS NULL AND NEW.description IS NOT NULL THEN
				INSERT INTO ${table}_writes VALUES (NEW.id, current_user);
			END IF;
			RETURN NEW;
		END \$\$;
		CREATE TRIGGER ${table}_audit AFTER UPDATE ON $table FOR EACH ROW EXECUTE FUNCTION ${table}_audit();
		CREATE TRIGGER ${table}_fill AFTER INSERT OR UPDATE ON $table FOR EACH ROW
			EXECUTE FUNCTION phi3_fill_async('description', 'Describe {name} in one sentence.');
		ALTER TABLE $table OWNER TO $owner;
		ALTER TABLE ${table}_writes OWNER TO $owner;
		ALTER FUNCTION ${table}_audit() OWNER TO $owner;
	});
}

$node->safe_psql('postgres', 'CREATE ROLE shop; CREATE ROLE alice; SELECT phi3_stats_reset()');
make_table('postgres', 'products', 'shop');
like(
	$node->safe_psql('postgres',
		"SELECT string_agg(backend_type, ',' ORDER BY backend_type) FROM pg_stat_activity WHERE backend_type LIKE 'phi3%'"),
	qr/^phi3 async launcher/, 'the launcher runs');

# ---- 50 rows, one transaction ----
my $s = Phi3TAP::Session->new($node);
$s->query_safe('BEGIN');
my $r = $s->query(
	"INSERT INTO products SELECT g, 'item ' || g, NULL FROM generate_series(1, 50) g");
is($r->{stderr}, '', 'the insert raises no warning (workers run)');
is($s->query_safe('SELECT count(*) FROM products WHERE description IS NOT NULL'),
	'0', 'inside the transaction nothing is filled');
is($s->query_safe("SELECT count(*) FROM phi3_queue_items WHERE state = 'pending'"),
	'50', 'the 50 rows are queued in the transaction');
Time::HiRes::sleep(0.3);
is($node->safe_psql('postgres', 'SELECT count(*) FROM phi3_queue_items'),
	'0', 'other sessions do not see the items before commit');
$s->query_safe('COMMIT');
is($s->query_safe('SELECT phi3_async_wait(120)'), 't', 'phi3_async_wait: the queue drained');
is($s->query_safe('SELECT count(*) FROM products WHERE description IS NOT NULL'),
	'50', 'all 50 rows are filled');
is( $s->query_safe(
		"SELECT string_agg(DISTINCT state || '/' || outcome || '/' || attempts, ',') FROM phi3_queue_items"),
	'done/filled/1', 'every item is done, filled, at the first attempt');
is($s->query_safe('SELECT count(*), count(DISTINCT id) FROM products_writes'),
	'50|50', 'each row was written once');
is($s->query_safe('SELECT string_agg(DISTINCT by_user, \',\') FROM products_writes'),
	'shop', 'the worker wrote as the table\'s owner');
is( $s->query_safe(
		"SELECT count(*) FROM products WHERE description = btrim(phi3_generate('Describe ' || name || ' in one sentence.'), E' \\t\\n\\r\\f')"
	),
	'50', 'each value is what phi3_generate gives for the rendered template');
is($s->query_safe("SELECT calls > 0, rows FROM phi3_stats WHERE function = 'phi3_fill_async'"),
	't|50', 'phi3_stats counts the 50 rows of phi3_fill_async');
is( $s->query_safe(
		"SELECT pending, running, done, failed FROM phi3_queue_status WHERE table_name = 'products'::regclass"),
	'0|0|50|0', 'phi3_queue_status');

# ---- a partitioned table: the trigger on the parent, items per partition ----
$node->safe_psql('postgres', q{
	CREATE TABLE events (id int, region text, name text, description text, PRIMARY KEY (id, region))
		PARTITION BY LIST (region);
	CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
	CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
	CREATE TRIGGER events_fill AFTER INSERT ON events FOR EACH ROW
		EXECUTE FUNCTION phi3_fill_async('description', 'Describe {name}.');
	INSERT INTO events VALUES (1, 'eu', 'a fair', NULL), (2, 'us', 'a parade', NULL);
});
is($s->query_safe('SELECT phi3_async_wait(60)'), 't', 'partitioned table: the queue drains');
is( $s->query_safe(
		"SELECT string_agg(table_name || ':' || key::text || ':' || outcome, ',' ORDER BY id) FROM phi3_queue_items WHERE column_name = 'description' AND table_name::text LIKE 'events%'"
	),
	'events_eu:{1,eu}:filled,events_us:{2,us}:filled', 'each row filled through its partition');
is($s->query_safe('SELECT count(*) FROM events WHERE description IS NOT NULL'), '2', 'both rows have a description');

# ---- rollback; the latency of one row ----
$s->query_safe("BEGIN; INSERT INTO products VALUES (100, 'rolled back', NULL); ROLLBACK");
Time::HiRes::sleep(0.5);
is($s->query_safe("SELECT count(*) FROM phi3_queue_items WHERE key = '{100}'"),
	'0', 'a rolled-back insert queues nothing');
my $t0 = Time::HiRes::time();
$s->query_safe("INSERT INTO products VALUES (101, 'one row', NULL)");
my $filled = poll_until('postgres', 'SELECT description IS NOT NULL FROM products WHERE id = 101',
	't', 30);
my $latency = Time::HiRes::time() - $t0;
is($filled, 't', 'a single row is filled');
cmp_ok($latency, '<', 3, 'within seconds of its commit (woken, not polled)');
note(sprintf('one row filled %.3f s after its insert', $latency));

# ---- one row that cannot be generated does not stop the others ----
# (its prompt does not fit phi3.context_size: the batch fails, its rows are
# generated one by one, and only that row fails)
$node->safe_psql('postgres', q{
	INSERT INTO products VALUES (200, 'fine two hundred', NULL),
		(201, repeat('far too long ', 3000), NULL), (202, 'fine two hundred two', NULL);
});
is($node->safe_psql('postgres', 'SELECT phi3_async_wait(60)'), 't', 'the queue drains');
is( $node->safe_psql('postgres',
		"SELECT string_agg(key[1] || ':' || state || ':' || attempts, ',' ORDER BY id) FROM phi3_queue_items WHERE key[1] IN ('200', '201', '202')"
	),
	'200:done:1,201:failed:3,202:done:1',
	'the rows beside it are filled at once; it fails after phi3.async_max_attempts');
like($node->safe_psql('postgres', "SELECT last_error FROM phi3_queue_items WHERE key = '{201}'"),
	qr/^input is too long/, 'with the error of that row');
is($node->safe_psql('postgres', 'SELECT count(*) FROM products WHERE id IN (200, 202) AND description IS NOT NULL'),
	'2', 'the other two rows are filled');

# ---- the owner may not write: failed after the attempts, retried ----
$node->safe_psql('postgres', q{
	CREATE TABLE notes (id int PRIMARY KEY, body text, summary text);
	CREATE TRIGGER notes_fill AFTER INSERT ON notes FOR EACH ROW
		EXECUTE FUNCTION phi3_fill_async('summary', 'Summarize: {body}');
	ALTER TABLE notes OWNER TO alice;
	SET ROLE alice;
	REVOKE UPDATE ON notes FROM alice;
	INSERT INTO notes VALUES (1, 'the owner cannot update', NULL);
});
is( poll_until(
		'postgres', "SELECT state FROM phi3_queue_items WHERE table_name = 'notes'::regclass",
		'failed', 60),
	'failed',
	'an owner without UPDATE: the item fails');
is( $node->safe_psql('postgres',
		"SELECT attempts, last_error FROM phi3_queue_items WHERE table_name = 'notes'::regclass"),
	'3|permission denied for table notes',
	'after phi3.async_max_attempts, with the error');
is($node->safe_psql('postgres', 'SELECT summary IS NULL FROM notes'), 't', 'the column was not written');
is($node->safe_psql('postgres', "SELECT failed FROM phi3_queue_status WHERE table_name = 'notes'::regclass"),
	'1', 'phi3_queue_status counts it failed');
is( $node->safe_psql('postgres',
		"SET ROLE alice; GRANT UPDATE ON notes TO alice; SELECT phi3_async_retry('notes'); SELECT phi3_async_wait(60)"),
	"1\nt", 'the owner retries it once the right is back');
is( $node->safe_psql('postgres',
		"SELECT state, attempts, outcome FROM phi3_queue_items WHERE table_name = 'notes'::regclass"),
	'done|1|filled', 'and it is filled');

# ---- back-off: a failed attempt waits phi3.async_retry_delay, doubled ----
$node->safe_psql('postgres', "ALTER SYSTEM SET phi3.async_retry_delay = '20min'; SELECT pg_reload_conf()");
Time::HiRes::sleep(1);
$node->safe_psql('postgres', q{
	SET ROLE alice;
	REVOKE UPDATE ON notes FROM alice;
	INSERT INTO notes VALUES (2, 'waits 20 minutes', NULL);
});
is( poll_until(
		'postgres', "SELECT attempts || '/' || state FROM phi3_queue_items WHERE key = '{2}' AND last_error IS NOT NULL",
		'1/pending', 60),
	'1/pending', 'with a retry delay the failed row is pending again');
is( $node->safe_psql('postgres',
		"SELECT retry_at > now() + interval '19 minutes' FROM phi3_queue_items WHERE key = '{2}' AND table_name = 'notes'::regclass"),
	't', 'due in 20 minutes (retry_at)');
Time::HiRes::sleep(1.5);
is($node->safe_psql('postgres', "SELECT attempts FROM phi3_queue_items WHERE key = '{2}' AND table_name = 'notes'::regclass"),
	'1', 'and not tried again meanwhile');
is($node->safe_psql('postgres', "SET ROLE alice; SELECT phi3_async_retry('notes')"),
	'1', 'phi3_async_retry makes it due now');
is( poll_until(
		'postgres', "SELECT attempts || '/' || state FROM phi3_queue_items WHERE key = '{2}' AND table_name = 'notes'::regclass",
		'2/pending', 60),
	'2/pending', 'it is tried at once');
is( $node->safe_psql('postgres',
		"SELECT state, retry_at > now() + interval '39 minutes' FROM phi3_queue_items WHERE key = '{2}' AND table_name = 'notes'::regclass"
	),
	'pending|t', 'failing again, it waits twice as long');
$node->safe_psql('postgres', "ALTER SYSTEM RESET phi3.async_retry_delay; SELECT pg_reload_conf()");
is( $node->safe_psql('postgres',
		"SET ROLE alice; GRANT UPDATE ON notes TO alice; SELECT phi3_async_retry('notes'); SELECT phi3_async_wait(60)"),
	"1\nt", 'retried with the right back, it is filled');
$s->quit;

# ---- a database whose rows generate slowly ----
$node->safe_psql('postgres', "CREATE DATABASE slow");
$node->safe_psql('postgres', "ALTER DATABASE slow SET phi3.model = '$big'");
$node->safe_psql('postgres', "ALTER DATABASE slow SET phi3.max_tokens = 150");
$node->safe_psql('slow', 'CREATE EXTENSION phi3; CREATE ROLE clerk');
make_table('slow', 'orders', 'clerk');

# Wait until the worker of database slow generates (tokens in phi3_stat_activity); its pid.
sub wait_generating
{
	my $deadline = Time::HiRes::time() + 60;
	while (Time::HiRes::time() < $deadline)
	{
		my $pid = $node->safe_psql('postgres',
			"SELECT a.pid FROM phi3_stat_activity a JOIN pg_stat_activity p USING (pid) "
			  . "WHERE p.backend_type = 'phi3 async worker' AND a.function = 'phi3_fill_async' "
			  . "AND a.tokens > 0");
		return $pid if $pid ne '';
		Time::HiRes::sleep(0.05);
	}
	return '';
}

$node->safe_psql('slow', "INSERT INTO orders VALUES (1, 'slow one', NULL)");
my $pid = wait_generating();
isnt($pid, '', 'a second session sees the worker generating in phi3_stat_activity');
is(worker_pid('postgres'), '', 'one worker: it left database postgres for database slow');
# while row 1 generates: rows 2 and 3 queue behind it; the user sets 1 and
# 2, deletes 3
$node->safe_psql('slow', q{
	INSERT INTO orders VALUES (2, 'slow two', NULL), (3, 'slow three', NULL);
	UPDATE orders SET description = 'set by the user' WHERE id IN (1, 2);
	DELETE FROM orders WHERE id = 3;
});
is($node->safe_psql('slow', "SELECT string_agg(state, ',' ORDER BY id) FROM phi3_queue_items"),
	'running,pending,pending', 'the user acted while the worker generated row 1');
is($node->safe_psql('slow', 'SELECT phi3_async_wait(120)'), 't', 'the queue drains');
is( $node->safe_psql('slow', "SELECT string_agg(id || ':' || description, ',' ORDER BY id) FROM orders"),
	'1:set by the user,2:set by the user', 'the values the user set are kept');
is( $node->safe_psql('slow', "SELECT string_agg(outcome, ',' ORDER BY id) FROM phi3_queue_items"),
	'value set,value set,row deleted', 'outcomes: value set (during and before generation), row deleted');
is($node->safe_psql('slow', "SELECT string_agg(by_user, ',') FROM orders_writes"),
	'postgres,postgres', 'the worker wrote nothing (the writes are the user\'s)');

# ---- one worker, two busy databases: they take turns (phi3.async_time_slice) ----
$node->safe_psql('postgres', "ALTER SYSTEM SET phi3.async_time_slice = '1s'; SELECT pg_reload_conf()");
Time::HiRes::sleep(1);
$node->safe_psql('slow', "INSERT INTO orders SELECT g, 'turn ' || g, NULL FROM generate_series(40, 47) g");
$pid = wait_generating();
isnt($pid, '', 'the worker generates the first batch of 8 slow rows');
$node->safe_psql('postgres', "INSERT INTO products VALUES (400, 'waits its turn', NULL)");
is(poll_until('postgres', 'SELECT description IS NOT NULL FROM products WHERE id = 400', 't', 120),
	't', 'the row of database postgres is filled');
is( $node->safe_psql('slow',
		"SELECT count(*) FROM phi3_queue_items WHERE state = 'pending' AND key[1]::int BETWEEN 40 AND 47"),
	'4', 'before the second batch of database slow: the worker left it after its batch');
is($node->safe_psql('slow', 'SELECT phi3_async_wait(120)'), 't', 'then database slow gets its turn back');
is($node->safe_psql('slow', 'SELECT count(*) FROM orders WHERE id BETWEEN 40 AND 47 AND description IS NOT NULL'),
	'8', 'and its rows are filled');
$node->safe_psql('postgres', "ALTER SYSTEM RESET phi3.async_time_slice; SELECT pg_reload_conf()");

# ---- DROP TRIGGER while the worker generates: nothing is written ----
$node->safe_psql('slow', q{
	CREATE TABLE drafts (id int PRIMARY KEY, name text, description text);
	CREATE TRIGGER drafts_fill AFTER INSERT ON drafts FOR EACH ROW
		EXECUTE FUNCTION phi3_fill_async('description', 'Describe {name} in one sentence.');
	INSERT INTO drafts VALUES (1, 'dropped trigger', NULL);
});
$pid = wait_generating();
isnt($pid, '', 'the worker generates the row of drafts');
$node->safe_psql('slow', 'DROP TRIGGER drafts_fill ON drafts');
is($node->safe_psql('slow', "SELECT count(*) FROM phi3_async_queue WHERE relid = 'drafts'::regclass"),
	'0', 'DROP TRIGGER deletes the running item');
is($node->safe_psql('slow', 'SELECT phi3_async_wait(120)'), 't', 'the queue drains');
# (the worker still finishes generating that row: wait until it is done)
is( poll_until(
		'postgres', "SELECT count(*) FROM phi3_stat_activity WHERE function = 'phi3_fill_async'", '0', 60),
	'0', 'the worker finishes the generation');
is($node->safe_psql('slow', 'SELECT description IS NULL FROM drafts'), 't',
	'the worker did not write the row of the dropped trigger');

# ---- kill -9 mid-generation ----
$node->safe_psql('slow', "INSERT INTO orders SELECT g, 'killed ' || g, NULL FROM generate_series(10, 12) g");
$pid = wait_generating();
isnt($pid, '', 'the worker generates the three rows');
is($node->safe_psql('slow', "SELECT count(*) FROM phi3_queue_items WHERE state = 'running'"),
	'3', 'they are running');
kill 'KILL', $pid;
my $back = 0;
for (1 .. 600)
{
	my ($ret) = $node->psql('slow', 'SELECT 1');
	if ($ret == 0) { $back = 1; last; }
	Time::HiRes::sleep(0.1);
}
ok($back, 'the server is back after the crash restart');
is($node->safe_psql('slow', 'SELECT phi3_async_wait(120)'), 't', 'the queue drains after kill -9');
is($node->safe_psql('slow', 'SELECT count(*) FROM orders WHERE id BETWEEN 10 AND 12 AND description IS NOT NULL'),
	'3', 'every killed row is filled');
is($node->safe_psql('slow', 'SELECT count(*), count(DISTINCT id) FROM orders_writes WHERE id BETWEEN 10 AND 12'),
	'3|3', 'each written once');
is( $node->safe_psql('slow',
		"SELECT string_agg(attempts || '/' || outcome, ',' ORDER BY id) FROM phi3_queue_items WHERE table_name = 'orders'::regclass AND key[1]::int BETWEEN 10 AND 12"),
	'2/filled,2/filled,2/filled', 'attempts 2: the killed attempt counts');
ok($node->log_contains(qr/"phi3 async worker" \(PID $pid\) was terminated by signal 9/),
	'the log shows the kill');

# ---- an immediate shutdown mid-generation ----
$node->safe_psql('slow', "INSERT INTO orders SELECT g, 'stopped ' || g, NULL FROM generate_series(20, 22) g");
$pid = wait_generating();
isnt($pid, '', 'the worker generates three more rows');
$node->stop('immediate');
$node->start;
is($node->safe_psql('slow', 'SELECT phi3_async_wait(120)'), 't', 'the queue drains after the restart');
is($node->safe_psql('slow', 'SELECT count(*), count(DISTINCT id) FROM orders_writes WHERE id BETWEEN 20 AND 22'),
	'3|3', 'every row filled, each written once');
is( $node->safe_psql('slow',
		"SELECT string_agg(attempts::text, ',' ORDER BY id) FROM phi3_queue_items WHERE table_name = 'orders'::regclass AND key[1]::int BETWEEN 20 AND 22"),
	'2,2,2', 'attempts 2');

# ---- terminate: the worker ends within a step ----
$node->safe_psql('slow', "INSERT INTO orders VALUES (30, 'terminated', NULL)");
$pid = wait_generating();
isnt($pid, '', 'the worker generates');
my $t1 = Time::HiRes::time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $gone = 0;
while (Time::HiRes::time() - $t1 < 10)
{
	if (!kill(0, $pid)) { $gone = 1; last; }
	Time::HiRes::sleep(0.01);
}
my $stop_time = Time::HiRes::time() - $t1;
ok($gone, 'pg_terminate_backend ends the worker');
cmp_ok($stop_time, '<', 1, 'within a second (one decoder step)');
note(sprintf('worker ended %.3f s after pg_terminate_backend', $stop_time));
is($node->safe_psql('slow', 'SELECT phi3_async_wait(120)'), 't', 'a new worker fills the row');
is($node->safe_psql('slow', "SELECT attempts || '/' || outcome FROM phi3_queue_items WHERE key = '{30}'"),
	'2/filled', 'at its second attempt');

# ---- DROP EXTENSION ----
isnt(worker_pid('slow'), '', 'a worker serves database slow');
$node->safe_psql('slow', 'DROP EXTENSION phi3 CASCADE');
is(poll_until('postgres',
		"SELECT count(*) FROM pg_stat_activity a JOIN pg_database d ON d.oid = a.datid "
		  . "WHERE backend_type = 'phi3 async worker' AND d.datname = 'slow'", '0', 30),
	'0', 'after DROP EXTENSION the worker of that database leaves');

# ---- an idle worker leaves its database after phi3.async_idle_timeout ----
$node->safe_psql('postgres', "ALTER SYSTEM SET phi3.async_idle_timeout = '1s'; SELECT pg_reload_conf()");
$node->safe_psql('postgres', 'CREATE DATABASE idle');
$node->safe_psql('idle', q{
	CREATE EXTENSION phi3;
	CREATE TABLE t (id int PRIMARY KEY, a text, b text);
	CREATE TRIGGER t_fill AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('b', 'About {a}.');
	INSERT INTO t VALUES (1, 'one', NULL);
});
is($node->safe_psql('idle', 'SELECT phi3_async_wait(60)'), 't', 'a row of database idle is filled');
is(poll_until('postgres',
		"SELECT count(*) FROM pg_stat_activity a JOIN pg_database d ON d.oid = a.datid "
		  . "WHERE backend_type = 'phi3 async worker' AND d.datname = 'idle'", '0', 30),
	'0', 'then its worker leaves the database');
my ($ret_drop, $out_drop, $err_drop) = psql_error($node, 'DROP DATABASE idle');
is($err_drop, '', 'DROP DATABASE is not blocked by a worker');
$node->safe_psql('postgres', "INSERT INTO products VALUES (300, 'after the worker left', NULL)");
is($node->safe_psql('postgres', 'SELECT phi3_async_wait(60); SELECT description IS NOT NULL FROM products WHERE id = 300'),
	"t\nt", 'a commit that queues a row starts a worker again');

# ---- a prepared transaction: its rows are filled after COMMIT PREPARED ----
# (as Citus ends every write on more than one node; the worker has left the
# database, so only the wake-up at COMMIT PREPARED can bring one back)
is(poll_until('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'phi3 async worker'",
		'0', 30), '0', 'the worker has left again');
$node->safe_psql('postgres', q{
	BEGIN; INSERT INTO products VALUES (301, 'prepared', NULL); PREPARE TRANSACTION 'p301';
	BEGIN; INSERT INTO products VALUES (302, 'rolled back', NULL); PREPARE TRANSACTION 'p302';
	ROLLBACK PREPARED 'p302'});
Time::HiRes::sleep(0.5);
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'phi3 async worker'"),
	'0', 'PREPARE TRANSACTION and ROLLBACK PREPARED start no worker');
$node->safe_psql('postgres', "COMMIT PREPARED 'p301'");
my $t_prep = Time::HiRes::time();
is($node->safe_psql('postgres', 'SELECT phi3_async_wait(60); SELECT description IS NOT NULL FROM products WHERE id = 301'),
	"t\nt", 'COMMIT PREPARED of a transaction that queued a row starts a worker, which fills it');
note(sprintf('row of the prepared transaction filled %.2f s after COMMIT PREPARED', Time::HiRes::time() - $t_prep));
is($node->safe_psql('postgres', 'SELECT count(*) FROM products WHERE id = 302'), '0', 'the rolled back row is not there');

my $crashes = join("\n", grep { !/signal 9|terminating any other active|all server processes terminated|terminating connection because of crash/ }
	split /\n/, server_log_crashes($node));
is($crashes, '', 'no crash in the log but the kill -9');
$node->stop;
done_testing();
