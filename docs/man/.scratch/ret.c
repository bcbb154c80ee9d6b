#include <ringlog.h>
#include <stdio.h>
#include <string.h>
int main(void){
  struct ringlog_options o; ringlog_options_init(&o); o.segment_bytes = 4096;
  struct ringlog *log; int e = ringlog_open("rwal", &o, &log); if (e) { printf("open %d %s\n", e, ringlog_last_error()); return 1; }
  char buf[1000]; memset(buf, 'a', sizeof buf); struct iovec v = {buf, sizeof buf}; uint64_t lsn=0;
  for (int i=0;i<40;i++){ ringlog_append(log,&v,1,&lsn); ringlog_wait(log,lsn);} 
  struct ringlog_reader *r; struct ringlog_record rec;
  e = ringlog_reader_open("rwal", 1, &r); printf("reader open %d\n", e);
  e = ringlog_reader_next(r,&rec); printf("next %d lsn %llu\n", e, (unsigned long long)rec.lsn);
  int n = ringlog_truncate_before(log, 30); printf("truncated %d\n", n);
  int cnt=0; while ((e = ringlog_reader_next(r,&rec))==1) cnt++;
  printf("then read %d more, end %d (%s) lsn %llu\n", cnt, e, e<0?ringlog_last_error():"", (unsigned long long)rec.lsn);
  ringlog_reader_close(r);
  e = ringlog_reader_open("rwal", 1, &r); printf("reopen from 1: %d; ", e); if(!e){ringlog_reader_next(r,&rec); printf("first lsn %llu\n",(unsigned long long)rec.lsn); ringlog_reader_close(r);} 
  e = ringlog_reader_open("rwal", 5, &r); printf("reopen from 5: %d %s\n", e, ringlog_last_error());
  struct ringlog_reader *lr; e = ringlog_reader_open_live(log, 0, &lr); printf("live %d\n", e);
  cnt=0; while ((e=ringlog_reader_next(lr,&rec))==1) cnt++; printf("live read %d end %d\n", cnt, e);
  ringlog_append(log,&v,1,&lsn);
  e = ringlog_reader_wait(lr, 1000000000); printf("reader_wait %d; next %d\n", e, ringlog_reader_next(lr,&rec));
  e = ringlog_reader_wait(lr, 0); printf("reader_wait0 %d last '%s'\n", e, ringlog_last_error());
  ringlog_reader_close(lr);
  e = ringlog_reader_open("rwal", 0, &r); printf("plain wait %d\n", ringlog_reader_wait(r, 0)); ringlog_reader_close(r);
  struct ringlog_recovery rep; ringlog_recovery_report(log, &rep); printf("report segs %u first %llu last %llu\n", rep.segments, (unsigned long long)rep.first_lsn,(unsigned long long)rep.last_lsn);
  printf("truncate all %d\n", ringlog_truncate_before(log, ~0ull));
  printf("close %d\n", ringlog_close(log));
  e = ringlog_open("rwal", &o, &log); printf("reopen %d next %llu durable %llu\n", e, (unsigned long long)ringlog_next_lsn(log),(unsigned long long)ringlog_durable_lsn(log));
  ringlog_recovery_report(log, &rep); printf("report segs %u first %llu last %llu\n", rep.segments, (unsigned long long)rep.first_lsn,(unsigned long long)rep.last_lsn);
  ringlog_close(log);
  return 0;
}
