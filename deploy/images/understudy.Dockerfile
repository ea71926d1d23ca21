# The understudy binary alone: `make images` builds it static, then this.
FROM scratch
COPY understudy /understudy
WORKDIR /var/lib/understudy
ENTRYPOINT ["/understudy"]
