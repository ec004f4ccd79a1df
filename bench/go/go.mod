module loombench

go 1.19
