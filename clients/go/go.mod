module unstuck

go 1.19
