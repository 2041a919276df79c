# 006_model_truncated.pl -- the model file is truncated in place while a
# backend computes with it.
#
# The weights are a shared file mapping: once the file is cut short, reading
# a page past its new end raises SIGBUS.  Without protection that kills the
# backend and the postmaster restarts every session.  The backend's SIGBUS
# guard (src/pg/model_cache.c) maps zeros over the vanished page, lets the
# computation finish, then discards the model and raises an error:
#
#   - the generating statement fails with XX001 "model file ... changed
#     while it was in use", with a hint to replace files by rename
#   - the same backend keeps working: once a good file is back, its next
#     statement generates the expected text again
#   - the postmaster did not restart, the log shows no crashed backend
use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Phi3TAP;

my $big = model_path('big');
my $dir = PostgreSQL::Test::Utils::tempdir();
my $path = "$dir/model.gguf";

copy($big, $path) or die "copy: $!";
chmod(0644, $path);
my $node = new_node('main', "phi3.model = '$path'");
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

my $long = "SELECT md5(phi3_complete('Once upon a time', 400))";
my $s = Phi3TAP::Session->new($node);
my $pid = $s->pid;
my $expected = $s->query_safe($long);
my $monitor = Phi3TAP::Session->new($node);

$s->send($long);
ok(wait_until_active($monitor, $s, '%phi3_complete(%400))%', 60), 'the generation is running');
ok(wait_cpu_seconds($s->pid, 0.3, 60), 'the backend is computing')
  or die 'the generating backend does not compute';

# cut the file in place to 1 MB: the rest of the mapping vanishes
truncate($path, 1024 * 1024) or die "truncate: $!";
my $r = $s->wait_result(180);
ok($r->{done}, 'the statement ended');
like($r->{stderr}, qr/ERROR:\s+XX001: model file "\Q$path\E" changed while it was in use/,
	'it fails with "changed while it was in use" (XX001)') or diag $r->{stderr};
like($r->{stderr}, qr/HINT:.*renaming it over the old one/, 'with a hint to replace files by rename');

is($s->query_safe('SELECT pg_backend_pid()'), $pid, 'the backend survived');
$r = $s->query($long);
like($r->{stderr}, qr/ERROR:\s+XX001: invalid model file "\Q$path\E"/,
	'the truncated file is then rejected as invalid');

copy($big, "$path.tmp") or die "copy: $!";
chmod(0644, "$path.tmp");
rename("$path.tmp", $path) or die "rename: $!";
is($s->query_safe($long), $expected, 'a good file is back: the same backend generates the expected text');
is($s->query_safe('SELECT pg_backend_pid()'), $pid, 'still the same backend');
$s->quit;
$monitor->quit;

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster did not restart');
is(server_log_crashes($node), '', 'the server log reports no crashed backend');

$node->stop;
done_testing();
