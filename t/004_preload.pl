# 004_preload.pl -- shared_preload_libraries = 'phi3' with phi3.model set.
#
#   - the postmaster maps the model at start (log line, /proc maps) and has
#     exactly one thread: it must never fork with live helper threads, and
#     it still has one after backends have generated and after a reload
#   - a new backend uses the postmaster's copy: phi3_model_info() says
#     "preloaded": true, its mapping of the file is at the same addresses as
#     the postmaster's (inherited, not opened again), and it generates
#     (the same text as a backend that opens the model itself) even after
#     the file was made unreadable (chmod 000; the file's identity is
#     unchanged), while opening an unreadable copy in a backend fails with
#     42501 -- so the backend cannot have opened the file itself
#   - a preload of a missing file logs a WARNING, the server still starts,
#     and backends report 58P01 when a phi3 function needs the model
#   - ALTER SYSTEM SET phi3.model to another file + pg_reload_conf(): new
#     sessions and existing ones use the new model
use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use Phi3TAP;

my $model_a = model_path('tiny-a');
my $model_b = model_path('tiny-b');
my $dir = PostgreSQL::Test::Utils::tempdir();
my $preload = "$dir/preload.gguf";
my $locked = "$dir/locked.gguf";
copy($model_a, $preload) or die "copy: $!";
copy($model_a, $locked) or die "copy: $!";
chmod(0644, $preload);
chmod(0000, $locked);

my $complete = "SELECT phi3_complete('Once upon a time', 12)";
my $info_sql = "SELECT concat_ws('|', i->>'path', i->>'name', i->>'preloaded') "
  . 'FROM phi3_model_info() AS i';

my $node = new_node('main', "shared_preload_libraries = 'phi3'", "phi3.model = '$preload'");

# The postmaster's pid from postmaster.pid
sub postmaster_pid
{
	my $line = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
	return $line + 0;
}

my $pm = postmaster_pid();
ok($node->log_contains(qr/LOG:\s+phi3 preloaded model "\Q$preload\E"/),
	'the postmaster logged the preload');
is(thread_count($pm), 1, 'the postmaster has exactly one thread');
my $pm_map = smaps_of_file($pm, $preload);
cmp_ok($pm_map->{mappings}, '>=', 1, 'the postmaster maps the model file');

# Texts of models A and B opened by a backend itself (phi3.model is
# superuser-settable; the tests connect as the bootstrap superuser)
my $own = Phi3TAP::Session->new($node);
$own->query_safe("SET phi3.model = '$model_a'");
my $text_a = $own->query_safe($complete);
is($own->query_safe($info_sql), "$model_a|phi3 tap model A|false",
	'a backend that opens model A itself is not preloaded');
$own->query_safe("SET phi3.model = '$model_b'");
my $text_b = $own->query_safe($complete);
isnt($text_a, $text_b, 'models A and B generate different texts');
my $r = $own->query("SET phi3.model = '$locked'; $complete");
like($r->{stderr}, qr/ERROR:\s+42501: could not open model file/,
	'a backend cannot open an unreadable model file itself (42501)');
$own->quit;

# The preloaded file becomes unreadable; its identity does not change
chmod(0000, $preload) or die "chmod: $!";

my $s = Phi3TAP::Session->new($node);
is($s->query_safe($info_sql), "$preload|phi3 tap model A|true",
	'a new backend reports the preloaded model');
is($s->query_safe($complete), $text_a,
	'its first generation works, although the file is unreadable now, and gives model A\'s text');
my $s_map = smaps_of_file($s->pid, $preload);
is_deeply($s_map->{ranges}, $pm_map->{ranges},
	'the backend maps the file at the postmaster\'s addresses (inherited mapping)');
is($s->query_safe($info_sql), "$preload|phi3 tap model A|true",
	'still preloaded after generating');
is(thread_count($pm), 1, 'the postmaster still has one thread after backends generated');
chmod(0644, $preload) or die "chmod: $!";

# ALTER SYSTEM + reload: existing and new sessions switch to model B
$node->safe_psql('postgres', "ALTER SYSTEM SET phi3.model = '$model_b'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $switched = 0;
for (1 .. 200)
{
	if ($s->query_safe('SHOW phi3.model') eq $model_b)
	{
		$switched = 1;
		last;
	}
	Time::HiRes::sleep(0.05);
}
ok($switched, 'the existing session sees the new phi3.model');
is($s->query_safe($info_sql), "$model_b|phi3 tap model B|false",
	'the existing session now uses model B');
is($s->query_safe($complete), $text_b, 'and generates model B\'s text');
$s->quit;
my $t = Phi3TAP::Session->new($node);
is($t->query_safe($info_sql), "$model_b|phi3 tap model B|false", 'a new session uses model B');
is($t->query_safe($complete), $text_b, 'and generates model B\'s text');
$t->quit;
is(thread_count($pm), 1, 'the postmaster still has one thread after the reload');
is(server_log_crashes($node), '', 'the server log reports no crashed backend');

# A preload of a missing file: a WARNING, the server starts, backends
# report the error
my $missing = "$dir/missing.gguf";
$node->safe_psql('postgres', 'ALTER SYSTEM RESET phi3.model');
$node->append_conf('postgresql.conf', "phi3.model = '$missing'");
my $offset = -s $node->logfile;
$node->restart;
ok($node->log_contains(qr/WARNING:\s+could not preload phi3 model "\Q$missing\E"/, $offset),
	'a missing model file is a WARNING at start');
is(thread_count(postmaster_pid()), 1, 'the postmaster has one thread');
my ($ret, $out, $err) = psql_error($node, $complete);
like($err, qr/ERROR:\s+58P01: could not open model file "\Q$missing\E"/,
	'a generation reports the missing file (58P01)');
($ret, $out, $err) = psql_error($node, 'SELECT phi3_model_info()');
like($err, qr/ERROR:\s+58P01:/, 'phi3_model_info reports the missing file (58P01)');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server works');

# Once the file exists, backends open it themselves
copy($model_a, $missing) or die "copy: $!";
$s = Phi3TAP::Session->new($node);
is($s->query_safe($info_sql), "$missing|phi3 tap model A|false",
	'once the file exists a backend opens it itself (not preloaded)');
is($s->query_safe($complete), $text_a, 'and generates model A\'s text');
$s->quit;
is(server_log_crashes($node), '', 'the server log reports no crashed backend');

$node->stop;
done_testing();
