#include <ringlog.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
static void show(const char *what, int e, struct ringlog_recovery *r){
  printf("%-16s ret %d segs %u first %llu last %llu cut %llu dropped %u damage %d file '%s' off %llu lsn %llu reason '%s'\n", what, e, r->segments,
   (unsigned long long)r->first_lsn,(unsigned long long)r->last_lsn,(unsigned long long)r->cut_bytes,r->dropped_segments,r->damage,r->damage_file,(unsigned long long)r->damage_offset,(unsigned long long)r->damage_lsn,r->damage_reason);
}
int main(void){
  struct ringlog_recovery r; int e; struct ringlog *log;
  ringlog_open("cw", NULL, &log);
  char buf[100]; memset(buf,'b',sizeof buf); struct iovec v={buf,sizeof buf}; uint64_t l;
  for(int i=0;i<5;i++){ringlog_append(log,&v,1,&l);} ringlog_close(log);
  int fd = open("cw/00000000000000000001.rlog", O_WRONLY|O_APPEND); write(fd, "garbagegarbage!!garbagegarbage!!", 32); close(fd);
  for (unsigned m=0;m<3;m++){ e = ringlog_check("cw", m, &r); show(m==0?"tolerate":m==1?"absolute":"pit", e, &r);} 
  e = ringlog_open("cw", NULL, &log); printf("open tolerate %d: ", e); ringlog_recovery_report(log,&r); show("report", 0, &r); ringlog_close(log);
  return 0;
}
