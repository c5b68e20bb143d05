#!/bin/sh
echo "app 1.0: $(ls /opt/app/lib | wc -l) modules"
