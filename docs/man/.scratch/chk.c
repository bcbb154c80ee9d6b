#include <ringlog.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
static void show(const char *what, int e, struct ringlog_recovery *r){
  printf("%-22s ret %d mode %u segs %u first %llu last %llu cut %llu dropped %u damage %d file '%s' off %llu lsn %llu reason '%s'\n", what, e, r->mode, r->segments,
   (unsigned long long)r->first_lsn,(unsigned long long)r->last_lsn,(unsigned long long)r->cut_bytes,r->dropped_segments,r->damage,r->damage_file,(unsigned long long)r->damage_offset,(unsigned long long)r->damage_lsn,r->damage_reason);
}
int main(void){
  struct ringlog_recovery r; int e;
  printf("sizeof recovery %zu\n", sizeof r);
  e = ringlog_check("nope", 0, &r); show("missing", e, &r);
  e = ringlog_check("cw", 7, &r); show("badmode(missing dir)", e, &r);
  struct ringlog_options o; ringlog_options_init(&o); o.segment_bytes=4096;
  struct ringlog *log; ringlog_open("cw", &o, &log);
  e = ringlog_check("cw", 7, &r); show("badmode", e, &r);
  e = ringlog_check("cw", 0, &r); show("fresh live", e, &r);
  char buf[1000]; memset(buf,'b',sizeof buf); struct iovec v={buf,sizeof buf}; uint64_t l;
  for(int i=0;i<12;i++){ringlog_append(log,&v,1,&l);} ringlog_wait(log,l);
  ringlog_close(log);
  e = ringlog_check("cw", 0, &r); show("clean", e, &r);
  /* torn tail: append garbage to last segment */
  int fd = open("cw/00000000000000000009.rlog", O_WRONLY|O_APPEND); if (fd<0) perror("open"); write(fd, "garbagegarbage!!", 16); close(fd);
  e = ringlog_check("cw", 0, &r); show("torn tolerate", e, &r);
  e = ringlog_check("cw", 1, &r); show("torn absolute", e, &r);
  e = ringlog_check("cw", 2, &r); show("torn pit", e, &r);
  /* damage in sealed segment 1 */
  fd = open("cw/00000000000000000001.rlog", O_WRONLY); pwrite(fd, "X", 1, 200); close(fd);
  e = ringlog_check("cw", 0, &r); show("sealed tolerate", e, &r);
  e = ringlog_check("cw", 2, &r); show("sealed pit", e, &r);
  o.recovery_mode = 2; e = ringlog_open("cw", &o, &log); printf("open pit %d next %llu\n", e, (unsigned long long)ringlog_next_lsn(log));
  ringlog_recovery_report(log,&r); show("report", 0, &r); ringlog_close(log);
  return 0;
}
