# 005_model_file_replaced.pl -- the model file is replaced or deleted while
# sessions have it open.
#
#   - replaced by rename (new file written to path.tmp, then moved over the
#     path): the next statement of a session that has the old model open
#     uses the new one (model_info and generated text are the new model's);
#     the two test models have the same size, so only the file's identity
#     (inode) tells them apart
#   - replaced by rename during a generation: the generation finishes on
#     the old mapping with the old model's text; the session's next
#     statement uses the new model
#   - deleted: the next statement fails with 58P01 in a new session and in
#     the session that had it open; when a file is back, the session works
#   - nothing crashes and the postmaster does not restart
#
# Truncation in place during a computation (SIGBUS on the mapping) is
# t/006_model_truncated.pl.
use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use Phi3TAP;

my $model_a = model_path('tiny-a');
my $model_b = model_path('tiny-b');
my $big = model_path('big');
my $dir = PostgreSQL::Test::Utils::tempdir();
my $path = "$dir/model.gguf";

is(-s $model_a, -s $model_b, 'the two tiny models have the same size');

# Replace a file by rename: write the new one next to it, then move it
sub replace_by_rename
{
	my ($from, $to) = @_;
	copy($from, "$to.tmp") or die "copy $from: $!";
	chmod(0644, "$to.tmp");
	rename("$to.tmp", $to) or die "rename: $!";
}

replace_by_rename($model_a, $path);
my $node = new_node('main', "phi3.model = '$path'");
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

my $complete = "SELECT phi3_complete('Once upon a time', 12)";
my $info_sql = "SELECT concat_ws('|', i->>'path', i->>'name') FROM phi3_model_info() AS i";

# Texts of A and B, each opened from its own file
my $ref = Phi3TAP::Session->new($node);
$ref->query_safe("SET phi3.model = '$model_a'");
my $text_a = $ref->query_safe($complete);
$ref->query_safe("SET phi3.model = '$model_b'");
my $text_b = $ref->query_safe($complete);
isnt($text_a, $text_b, 'models A and B generate different texts');
$ref->quit;

# ---- replaced by rename between statements ----
my $s = Phi3TAP::Session->new($node);
my $pid = $s->pid;
is($s->query_safe($info_sql), "$path|phi3 tap model A", 'the session has model A open');
is($s->query_safe($complete), $text_a, 'and generates its text');

replace_by_rename($model_b, $path);
is($s->query_safe($info_sql), "$path|phi3 tap model B",
	'after the rename the next statement sees model B');
is($s->query_safe($complete), $text_b, 'and generates model B\'s text');
is($s->query_safe('SELECT pg_backend_pid()'), $pid, 'in the same backend');

replace_by_rename($model_a, $path);
is($s->query_safe($complete), $text_a, 'renamed back: model A\'s text again');

# ---- replaced by rename during a generation ----
my $bigpath = "$dir/big.gguf";
replace_by_rename($big, $bigpath);
my $long = "SELECT md5(phi3_complete('Once upon a time', 500))";
my $g = Phi3TAP::Session->new($node);
$g->query_safe("SET phi3.model = '$bigpath'");
my $expected_long = $g->query_safe($long);
my $monitor = Phi3TAP::Session->new($node);
$g->send($long);
ok(wait_until_active($monitor, $g, '%phi3_complete(%500))%', 60),
	'during a generation: it is running');
ok(wait_cpu_seconds($g->pid, 0.3, 60), 'during a generation: the backend is computing')
  or die 'the generating backend does not compute';
replace_by_rename($model_b, $bigpath);
ok(!$g->finished, 'during a generation: it was still running when the file was replaced');
my $r = $g->wait_result(120);
ok($r->{done} && $r->{stderr} eq '', 'during a generation: it finished without error')
  or diag $r->{stderr};
is($r->{stdout}, $expected_long,
	'during a generation: it finished on the old mapping with the old model\'s text');
is($g->query_safe($info_sql), "$bigpath|phi3 tap model B",
	'during a generation: the next statement uses the new file');
is($g->query_safe($complete), $text_b, 'and generates model B\'s text');
$g->quit;
$monitor->quit;

# ---- deleted ----
unlink($path) or die "unlink: $!";
my ($ret, $out, $err) = psql_error($node, $complete);
like($err, qr/ERROR:\s+58P01: could not open model file "\Q$path\E"/,
	'deleted: a new session gets 58P01');
$r = $s->query($complete);
like($r->{stderr}, qr/ERROR:\s+58P01: could not open model file "\Q$path\E"/,
	'deleted: the session that had it open gets 58P01 on its next statement');
replace_by_rename($model_b, $path);
is($s->query_safe($complete), $text_b, 'a file is back: the session generates again');
is($s->query_safe('SELECT pg_backend_pid()'), $pid, 'in the same backend');
$s->quit;

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster did not restart');
is(server_log_crashes($node), '', 'the server log reports no crashed backend');

$node->stop;
done_testing();
